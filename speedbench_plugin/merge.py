"""``python -m speedbench_plugin merge RUN_DIR... --out DIR [--compare BASELINE]``: join the run
folders of a sharded session (``--speedbench-shard I/N``) into one ``results.json``, one
pytest-benchmark JSON, one report and, with ``--compare``, one gate verdict with its exit code.

Records come from each folder's journal (every finished case, as measured), so the merged records
are the unsharded run's: the session-level sections (speedup against the no-drafter case) are
computed once over all of them. Folders whose fingerprints disagree on what must be equal (the
options that shape a case, the model, the data, an engine's version, the GPU model) are refused,
each difference named, unless ``--allow-mismatch``. Duplicated cases are named; a duplicate that
differs from the kept record is written to ``duplicates.json``, never dropped. Cases a shard
planned but no folder holds are named as missing and make the merged run partial.
"""
from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedbench_plugin import __version__
from speedbench_plugin.cache import atomic_write_json
from speedbench_plugin.journal import JOURNAL_NAME, differences, read_journal
from speedbench_plugin.record import Record, RecordSchemaError, session_speedups
from speedbench_plugin.reports import RESULTS_NAME, results_document
from speedbench_plugin.rundir import SHARD_NAME

BENCHMARK_NAME = "benchmark.json"
REPORT_NAME = "report.html"
DUPLICATES_NAME = "duplicates.json"
# Options that may differ between the shards of one session.
SHARD_OPTIONS = frozenset({"speedbench_shard", "speedbench_shard_durations", "speedbench_compare",
                           "speedbench_compare_strict", "speedbench_report"})


class MergeError(ValueError):
    """Shards that cannot be joined; the message names each folder and difference."""


@dataclass
class ShardRun:
    path: Path
    fingerprint: dict[str, Any] | None
    records: dict[str, dict[str, Any]]  # nodeid -> record JSON, as journaled
    partial: bool
    shard: dict[str, Any] | None = None  # shard.json, when the run was a shard

    @property
    def label(self) -> str:
        share = (self.shard or {}).get("shard")
        return f"{self.path}" + (f" (shard {share['index']}/{share['count']})" if share else "")

    @property
    def gpus(self) -> list[str] | None:
        hardware = (self.shard or {}).get("hardware")
        return sorted(set(hardware.get("gpus") or [])) if isinstance(hardware, dict) else None


def load_run(path: Path) -> ShardRun:
    journal, shard_file = path / JOURNAL_NAME, path / SHARD_NAME
    if not path.is_dir():
        raise MergeError(f"{path}: not a folder; give the run folders (results/<run>/) the shards wrote")
    shard = None
    if shard_file.is_file():
        try:
            shard = json.loads(shard_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MergeError(f"{shard_file}: cannot read it ({exc})") from None
    if not journal.is_file():
        if shard is None:
            raise MergeError(f"{path}: no {JOURNAL_NAME} and no {SHARD_NAME}; not a speedbench run folder")
        return ShardRun(path, None, {}, False, shard)  # a shard whose share was empty
    contents = read_journal(journal)
    if contents.fingerprint is None:
        raise MergeError(f"{journal}: no session line; not a speedbench journal")
    return ShardRun(path, contents.fingerprint, contents.records, bool(contents.ended_partial is not False), shard)


def _comparable_fingerprint(fp: Mapping[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in (fp.get("options") or {}).items() if k not in SHARD_OPTIONS}
    return {"options": options, "speedbench_version": fp.get("speedbench_version"), "record_schema": fp.get("record_schema")}


def mismatches(runs: Sequence[ShardRun], records: Mapping[str, Record]) -> list[str]:
    """Every difference between the runs on what must be equal, each named with the folders."""
    out: list[str] = []
    with_fp = [r for r in runs if r.fingerprint is not None]
    if with_fp:
        first = with_fp[0]
        for other in with_fp[1:]:
            for diff in differences(_comparable_fingerprint(first.fingerprint or {}), _comparable_fingerprint(other.fingerprint or {})):
                out.append(f"{diff.replace('journal', first.label, 1).replace('this run', other.label, 1)}")
    gpus = {str(r.gpus): r.label for r in runs if r.gpus is not None}
    if len(gpus) > 1:
        out.append("GPU model: " + "; ".join(f"{label}: {g}" for g, label in gpus.items()))
    for what in ("model", "engine version"):
        seen: dict[str, dict[str, list[str]]] = {}
        for record in records.values():
            case = record.case
            engine, value = ((case.engine, f"{case.engine} {case.engine_version}") if what == "engine version"
                             else ("", f"{case.model_sha[:12]} ({case.model_identity})"))
            seen.setdefault(engine, {}).setdefault(value, []).append(record.case_id)
        for values in seen.values():
            if len(values) > 1:
                out.append(f"{what}: " + "; ".join(f"{v} in {', '.join(ids[:3])}" for v, ids in values.items()))
    return out


@dataclass
class Merged:
    records: list[Record]
    runs: list[ShardRun]
    duplicates: list[str] = field(default_factory=list)  # node ids found in more than one folder
    conflicting: list[dict[str, Any]] = field(default_factory=list)  # duplicates that differ, kept aside
    missing: list[str] = field(default_factory=list)
    missing_shards: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def partial_reason(self) -> str | None:
        reasons = []
        if self.missing_shards:
            reasons.append(f"shard(s) {', '.join(self.missing_shards)} not given")
        if self.missing:
            reasons.append(f"{len(self.missing)} planned case(s) missing")
        partial = [r.label for r in self.runs if r.partial and r.records]
        if partial:
            reasons.append(f"partial shard(s): {', '.join(partial)}")
        return "; ".join(reasons) or None


def merge_runs(paths: Sequence[Path], allow_mismatch: bool = False) -> Merged:
    runs = [load_run(p) for p in paths]
    kept: dict[str, dict[str, Any]] = {}
    where: dict[str, ShardRun] = {}
    duplicates: list[str] = []
    conflicting: list[dict[str, Any]] = []
    for run in runs:
        for nodeid, data in run.records.items():
            if nodeid in kept:
                duplicates.append(nodeid)
                if data != kept[nodeid]:
                    conflicting.append({"nodeid": nodeid, "kept_from": str(where[nodeid].path),
                                        "from": str(run.path), "record": data})
                continue
            kept[nodeid] = data
            where[nodeid] = run
    try:
        records = {n: Record.from_json(d, where=f"{where[n].path / JOURNAL_NAME} ({n})") for n, d in kept.items()}
    except RecordSchemaError as exc:
        raise MergeError(str(exc)) from None
    merged = Merged(list(records.values()), runs, sorted(set(duplicates)), conflicting)
    merged.mismatches = mismatches(runs, records)
    if conflicting and not allow_mismatch:
        merged.mismatches.append("differing records for the same case: " + ", ".join(sorted({c["nodeid"] for c in conflicting})))
    if merged.mismatches and not allow_mismatch:
        raise MergeError("the run folders do not belong to one session; their records would not be comparable:\n  "
                         + "\n  ".join(merged.mismatches)
                         + "\nRerun the odd shard with the others' settings, or join anyway with --allow-mismatch.")
    planned: set[str] = set()
    counts = {r.shard["shard"]["count"] for r in runs if r.shard}
    for run in runs:
        shares = (run.shard or {}).get("shares")
        if shares:
            planned.update(n for share in shares for n in share)
    merged.missing = sorted(planned - set(records))
    if len(counts) == 1:
        count = counts.pop()
        given = {r.shard["shard"]["index"] for r in runs if r.shard}
        merged.missing_shards = [f"{i}/{count}" for i in range(1, count + 1) if i not in given]
    elif len(counts) > 1 and not allow_mismatch:
        raise MergeError(f"the shards were cut for different counts ({', '.join(map(str, sorted(counts)))} shards)")
    sections = session_speedups(merged.records)
    merged.records = sorted((r.with_sections(sections.get(r.case_id, {})) for r in merged.records),
                            key=lambda r: r.case.nodeid)
    return merged


def benchmark_document(records: Sequence[Record], partial: str | None) -> dict[str, Any]:
    """pytest-benchmark's own JSON (``pytest-benchmark compare`` reads it): stats from each case's
    round wall times, the record in ``extra_info``."""
    from pytest_benchmark.stats import Stats

    benchmarks = []
    for record in records:
        stats = Stats()  # type: ignore[no-untyped-call]
        for wall in record.speed.wall_time_s_rounds:
            stats.update(wall)  # type: ignore[no-untyped-call]
        entry = {"group": record.case.split, "name": record.case_id, "fullname": record.case.nodeid,
                 "params": None, "param": None, "extra_info": {"speedbench": record.to_json()},
                 "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 1, "max_time": 0,
                             "min_time": 0, "warmup": False}}
        if stats:
            entry["stats"] = {**stats.as_dict(),  # type: ignore[no-untyped-call]
                               "iterations": 1, "data": list(stats.data)}
        benchmarks.append(entry)
    document = results_document(records, partial)
    return {"machine_info": {**document["machine_info"], "merged_on": platform.node()},
            "commit_info": {}, "benchmarks": [b for b in benchmarks if "stats" in b],
            "datetime": dt.datetime.now(dt.timezone.utc).isoformat(), "version": _pytest_benchmark_version(),
            "speedbench_version": __version__, "partial": partial is not None, "partial_reason": partial,
            # Cases without a timed round (a workload that raised) are not a benchmark for pytest-benchmark.
            "speedbench_untimed": [b["extra_info"] for b in benchmarks if "stats" not in b]}


def _pytest_benchmark_version() -> str:
    from importlib.metadata import version

    return version("pytest-benchmark")


def write_outputs(merged: Merged, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    partial = merged.partial_reason
    document = results_document(merged.records, partial)
    document["merged_from"] = [str(r.path) for r in merged.runs]
    document["merge_notes"] = {"duplicates": merged.duplicates, "missing": merged.missing,
                               "missing_shards": merged.missing_shards, "mismatches_allowed": merged.mismatches}
    written = [out / RESULTS_NAME, out / BENCHMARK_NAME]
    atomic_write_json(written[0], document)
    atomic_write_json(written[1], benchmark_document(merged.records, partial))
    if merged.conflicting:
        written.append(out / DUPLICATES_NAME)
        atomic_write_json(written[-1], {"duplicates": merged.conflicting})
    return written
