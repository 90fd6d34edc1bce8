"""The regression gate on merged shards: the gate's own judge (:mod:`speedbench_plugin.compare`)
applied to the joined records, once, with the exit code CI needs (1: a case regressed, or nothing
was judged under ``--compare-strict``; 0 otherwise)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import atomic_write_json
from speedbench_plugin.compare import baseline as bl
from speedbench_plugin.compare import judge
from speedbench_plugin.compare.judge import failure_message
from speedbench_plugin.compare.matching import index_by_key, record_key
from speedbench_plugin.compare.settings import Thresholds
from speedbench_plugin.merge import Merged
from speedbench_plugin.record import Record
from speedbench_plugin.reports import results_document


class GateInputError(ValueError):
    """A baseline that cannot be used."""


@dataclass
class Verdict:
    records: list[Record]  # with their ``comparison`` section
    lines: list[str]
    exit_code: int


def shard_hardware(merged: Merged) -> dict[str, Any]:
    """The machine the shards measured on (the merge refused shards on different GPU models);
    this machine's when no shard recorded one (folders of unsharded runs)."""
    for run in merged.runs:
        hardware = (run.shard or {}).get("hardware")
        if isinstance(hardware, dict):
            return hardware
    return bl.hardware_fingerprint()


def judge_merged(merged: Merged, baseline_path: str, match: str, strict: bool) -> Verdict:
    try:
        baseline = bl.load(bl.resolve(baseline_path, Path.cwd(), must_exist=True))
    except bl.BaselineError as exc:
        raise GateInputError(f"--compare: {exc}") from None
    thresholds = Thresholds()
    index = index_by_key(baseline.cases.values(), match)
    family = max(1, sum(record_key(r, match) in index for r in merged.records))
    hardware = shard_hardware(merged)
    judged = []
    for record in merged.records:
        candidates = index.get(record_key(record, match), [])
        if len(candidates) != 1:
            why = "not in the baseline" if not candidates else f"ambiguous: {len(candidates)} baseline cases match"
            comparison = judge.CaseComparison(record.case_id, None, str(baseline.path), judge.NOT_COMPARABLE, notes=[why])
        else:
            comparison = judge.compare_case(record, candidates[0], baseline_path=str(baseline.path), thresholds=thresholds,
                                            family_size=family, current_hardware=hardware,
                                            baseline_hardware=baseline.hardware)
        judged.append(record.with_sections({"comparison": comparison.to_dict()}))
    return _verdict(judged, strict)


def _verdict(records: list[Record], strict: bool) -> Verdict:
    comparisons = [r.section("comparison") or {} for r in records]
    counts = {s: sum(c.get("status") == s for c in comparisons) for s in judge.STATUS_ORDER}
    lines = ["speedbench merge gate: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    lines += [failure_message(c) for c in comparisons if c.get("status") == judge.REGRESSED]
    nothing = all(c.get("status") == judge.NOT_COMPARABLE for c in comparisons)
    if nothing:
        lines.append("speedbench merge gate: the comparison judged NOTHING (every case not comparable)"
                     + ("; --compare-strict makes this a failure" if strict else ""))
    failed = counts[judge.REGRESSED] > 0 or (strict and nothing)
    return Verdict(records, lines, 1 if failed else 0)


def save_baseline(records: Sequence[Record], target: Path, hardware: dict[str, Any] | None = None) -> Path:
    document = bl.baseline_document(records, results_document(records))
    if hardware is not None:
        document["fingerprint"] = hardware
    atomic_write_json(target, document)
    return target
