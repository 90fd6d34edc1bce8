"""What a report holds: runs read from results files, and each later run's cases paired with the
first run's.

A run is one file: the suite's own results file (``--speedbench-json``), pytest-benchmark's JSON
written by this suite (``--benchmark-json``) or a baseline (``--speedbench-save-baseline``). All
three carry ``benchmarks[*].extra_info.speedbench``, a record read with ``Record.from_json``.

The report computes no figure: every number comes from a record. What it does compute is named
as such wherever it is shown: deltas between two runs' record figures, and the mean and range
over categories of a heatmap's row.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedbench_plugin.record import SCHEMA_VERSION, Record, RecordSchemaError

BASELINE_KEY = "speedbench_baseline_schema"  # compare/baseline.py's SCHEMA_KEY, without importing the gate


class ReportInputError(ValueError):
    """A file the report cannot read; the message names the file and what is wrong."""


# --- runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    label: str
    path: Path
    kind: str  # "speedbench results", "pytest-benchmark JSON" or "baseline"
    records: tuple[Record, ...]
    created: str | None = None
    partial: bool = False
    machine: dict[str, Any] = field(default_factory=dict)  # machine_info, or a baseline's fingerprint
    commit: dict[str, Any] | None = None
    speedbench_version: str | None = None
    without_record: tuple[str, ...] = ()  # benchmark entries that hold no speedbench record
    # cases that failed before measuring (an engine that refused to start): (node id, cause)
    failed_without_record: tuple[tuple[str, str], ...] = ()

    @property
    def engines(self) -> list[str]:
        return sorted({f"{r.case.engine} {r.case.engine_version}" for r in self.records})


def _document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ReportInputError(f"{path}: not a text file; give a results JSON file") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise ReportInputError(
            f"{path}: not a speedbench results file (no 'benchmarks' list); give a file written by "
            "--speedbench-json, --benchmark-json or --speedbench-save-baseline")
    return document


def _kind(document: dict[str, Any]) -> str:
    if BASELINE_KEY in document:
        return "baseline"
    return "pytest-benchmark JSON" if "commit_info" in document or "version" in document else "speedbench results"


def read_run(path: Path, label: str | None = None) -> Run:
    """One results file as a run; :class:`ReportInputError` names the file and what is wrong."""
    document = _document(path)
    kind = _kind(document)
    schema = document.get("record_schema") if kind == "baseline" else document.get("speedbench_record_schema")
    if schema is not None and schema != SCHEMA_VERSION:
        raise ReportInputError(
            f"{path}: written with record schema {schema}, but this speedbench reads schema {SCHEMA_VERSION}; "
            "report it with the speedbench version that wrote it, or re-run the benchmark")
    records: list[Record] = []
    without: list[str] = []
    for index, entry in enumerate(document["benchmarks"]):
        raw = (entry.get("extra_info") or {}).get("speedbench") if isinstance(entry, dict) else None
        if raw is None:
            without.append(str(entry.get("name", f"benchmarks[{index}]")) if isinstance(entry, dict) else f"benchmarks[{index}]")
            continue
        try:
            records.append(Record.from_json(raw, where=f"{path}: benchmarks[{index}]"))
        except RecordSchemaError as exc:
            raise ReportInputError(str(exc)) from None
        except (ValueError, TypeError) as exc:  # a value a record's parts refuse, e.g. a bad drafter spec
            raise ReportInputError(f"{path}: benchmarks[{index}]: not a readable speedbench record ({exc})") from None
    if not records:
        raise ReportInputError(
            f"{path}: holds no speedbench records ({len(without)} benchmark entries, none with "
            "extra_info.speedbench); a --benchmark-json file from another suite?")
    created = document.get("created") or document.get("datetime")
    machine = document.get("fingerprint") if kind == "baseline" else document.get("machine_info")
    failures = tuple((str(f.get("nodeid", "?")), str(f.get("error", "")))
                     for f in document.get("failed_without_record") or () if isinstance(f, dict))
    return Run(label or path.stem, path, kind, tuple(records), str(created) if created else None,
               bool(document.get("partial")), dict(machine or {}), document.get("commit_info"),
               document.get("speedbench_version"), tuple(without), failures)


def unique_labels(paths: Sequence[Path], given: Sequence[str] | None = None) -> list[str]:
    """``given`` where set, else the file's stem, with its folder where two stems are the same."""
    labels = list(given or [])[: len(paths)]
    labels += [p.stem for p in paths[len(labels):]]
    for index, path in enumerate(paths):
        if index >= len(given or []) and labels.count(labels[index]) > 1:
            labels[index] = f"{path.parent.name}/{path.stem}"
    seen: dict[str, int] = defaultdict(int)
    out = []
    for label in labels:
        seen[label] += 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


# --- pairing the cases of two runs -------------------------------------------------------------

CaseKeyFn = Callable[[Record], Hashable]

# From the strictest to the loosest; a looser key pairs only what the stricter ones left and only
# where it names one case on each side (never a guess between two).
MATCH_KEYS: tuple[tuple[str, CaseKeyFn], ...] = (
    ("case id", lambda r: r.case_id),
    ("same labels and drafter",
     lambda r: (r.case.split, r.case.label, r.case.drafter.id, r.case.concurrency, r.case.dynamic_table is not None)),
    ("same labels and drafter method",
     lambda r: (r.case.split, r.case.label, r.case.drafter.method, r.case.concurrency, r.case.dynamic_table is not None)),
)


@dataclass(frozen=True)
class Figure:
    """A record figure compared between runs."""

    name: str
    unit: str
    higher_is_better: bool
    read: Callable[[Record], float | None]


FIGURES = (
    Figure("AL", "", True, lambda r: r.acceptance.acceptance_length),
    Figure("AL drafting steps", "", True, lambda r: r.acceptance.acceptance_length_drafting_steps),
    Figure("AR", "", True, lambda r: r.acceptance.acceptance_rate),
    Figure("output TPS", "tok/s", True, lambda r: r.speed.output_tps),
    Figure("user TPS median", "tok/s", True, lambda r: r.speed.user_tps_median),
    Figure("TTFT median", "s", False, lambda r: r.speed.ttft_median_s),
    Figure("TPOT median", "s", False, lambda r: r.speed.tpot_median_s),
)


@dataclass(frozen=True)
class Delta:
    """``other - reference`` of one record figure (a delta between two runs, computed here)."""

    figure: Figure
    reference: float | None
    other: float | None

    @property
    def change(self) -> float | None:
        return None if self.reference is None or self.other is None else self.other - self.reference

    @property
    def relative(self) -> float | None:
        change = self.change
        return None if change is None or not self.reference else change / abs(self.reference)

    @property
    def better(self) -> bool | None:
        change = self.change
        if change is None or change == 0 or math.isnan(change):
            return None
        return (change > 0) == self.figure.higher_is_better


@dataclass(frozen=True)
class CasePair:
    reference: Record
    other: Record
    matched_by: str

    def deltas(self) -> list[Delta]:
        return [Delta(f, f.read(self.reference), f.read(self.other)) for f in FIGURES]

    def delta(self, name: str) -> Delta:
        return next(d for d in self.deltas() if d.figure.name == name)

    @property
    def notes(self) -> list[str]:
        a, b = self.reference, self.other
        out = []
        if a.acceptance.histogram_source != b.acceptance.histogram_source:
            out.append(f"AL from different step sources ({a.acceptance.histogram_source} vs "
                       f"{b.acceptance.histogram_source})")
        for name in ("max_tokens", "temperature", "model_sha"):
            if getattr(a.case, name) != getattr(b.case, name):
                out.append(f"{name} {getattr(a.case, name)} vs {getattr(b.case, name)}")
        return out


@dataclass(frozen=True)
class RunComparison:
    reference: Run
    other: Run
    pairs: tuple[CasePair, ...]
    only_reference: tuple[Record, ...]
    only_other: tuple[Record, ...]
    ambiguous: tuple[str, ...] = ()  # why a case could not be placed though candidates existed

    @property
    def matched_by(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for pair in self.pairs:
            counts[pair.matched_by] += 1
        return dict(counts)


def _index(records: Iterable[Record], key: CaseKeyFn) -> dict[Hashable, list[Record]]:
    out: dict[Hashable, list[Record]] = defaultdict(list)
    for record in records:
        out[key(record)].append(record)
    return out


def pair_runs(reference: Run, other: Run) -> RunComparison:
    left, right = list(reference.records), list(other.records)
    pairs: list[CasePair] = []
    ambiguous: list[str] = []
    for name, key in MATCH_KEYS:
        a, b = _index(left, key), _index(right, key)
        for value in a.keys() & b.keys():
            if len(a[value]) == 1 and len(b[value]) == 1:
                pairs.append(CasePair(a[value][0], b[value][0], name))
        paired = {id(p.reference) for p in pairs} | {id(p.other) for p in pairs}
        left = [r for r in left if id(r) not in paired]
        right = [r for r in right if id(r) not in paired]
    loosest = MATCH_KEYS[-1][1]
    a, b = _index(left, loosest), _index(right, loosest)
    for value in a.keys() & b.keys():
        ambiguous.append(f"{len(a[value])} case(s) of {reference.label} and {len(b[value])} of {other.label} share "
                         f"labels, drafter method and concurrency ({', '.join(r.case_id for r in a[value] + b[value])})"
                         ": not paired, no guess between them")
    order = {r.case_id: i for i, r in enumerate(reference.records)}
    pairs.sort(key=lambda p: order.get(p.reference.case_id, 0))
    return RunComparison(reference, other, tuple(pairs), tuple(left), tuple(right), tuple(ambiguous))


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    runs: tuple[Run, ...]
    comparisons: tuple[RunComparison, ...]

    @classmethod
    def of(cls, runs: Sequence[Run]) -> Report:
        if not runs:
            raise ReportInputError("no results files given")
        return cls(tuple(runs), tuple(pair_runs(runs[0], other) for other in runs[1:]))

    @property
    def multi(self) -> bool:
        return len(self.runs) > 1

    def records(self) -> list[tuple[Run, Record]]:
        return [(run, record) for run in self.runs for record in run.records]

    def drafter_ids(self) -> list[str]:
        """Every drafter of every run: ``none`` first, then by method, k and id."""
        seen = {r.case.drafter.id: r.case.drafter for _, r in self.records()}
        return sorted(seen, key=lambda d: (seen[d].enabled, seen[d].method, seen[d].k, d))

    def sections_named(self, name: str) -> list[tuple[Run, Record, Any]]:
        return [(run, r, r.section(name)) for run, r in self.records() if r.section(name) is not None]


def load_report(paths: Sequence[str | Path], labels: Sequence[str] | None = None) -> Report:
    files = [Path(p) for p in paths]
    if labels and len(labels) > len(files):
        raise ReportInputError(f"{len(labels)} labels for {len(files)} files")
    names = unique_labels(files, labels)
    return Report.of([read_run(path, name) for path, name in zip(files, names)])


# --- summaries the report computes (named as such where shown) ----------------------------------


@dataclass(frozen=True)
class Spread:
    """The unweighted mean and range of a heatmap row over its categories (computed by the report)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread:
        clean = [v for v in values if v is not None and not math.isnan(v)]
        if not clean:
            return cls(None, None, None, 0)
        return cls(sum(clean) / len(clean), min(clean), max(clean), len(clean))
