"""Cases across runs: series of comparable records, what changed between them, and where a shift
starts.

A *series* is one case (split, category or bucket/tier, load, workload, drafter method) on one
model and one kind of hardware: a record on another model (weights fingerprint) or another GPU
starts a series of its own, never joined to the first. Within a series, what changed from one run
to the next (engine version, drafter, suite version) labels the step.

Each step is judged with the gate's own statistics (:func:`speedbench_plugin.compare.judge.compare_case`:
a paired bootstrap over the same requests for AL and AR, a one-sided Mann-Whitney U test over
rounds for the speed figures, Holm-adjusted). The band drawn around a run is the gate's interval of
the change from the previous run, placed on the previous run's value. A *shift* starts at a run the
gate finds regressed or improved against the run before; it is *sustained* when the next run
does not move back (the gate finds it unchanged, or moving further the same way), *reverted* when
it does, and *unconfirmed* on the latest run. Why this test and not a change-point search over
the values (PELT, binary segmentation): a history of a few runs has too few points for a
penalised segmentation to decide anything, while each run holds many requests and several
rounds; the gate's tests use them, so a mark means exactly "the gate would have flagged this step".
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from speedbench_plugin.compare.judge import (
    IMPROVED,
    REGRESSED,
    CaseComparison,
    MetricResult,
    compare_case,
    gpu_share,
)
from speedbench_plugin.compare.settings import Thresholds
from speedbench_plugin.record import Record
from speedbench_plugin.report.model import Run
from speedbench_plugin.telemetry.cost import SECTION as COST
from speedbench_plugin.telemetry.cost import VS_NONE


def _cost(record: Record, key: str) -> float | None:
    value = (record.section(COST) or {}).get(key)
    return None if value is None else float(value)


def _energy(record: Record, per: str) -> float | None:
    """Joules per token: RAPL package energy plus GPU energy, where either was measured."""
    parts = [_cost(record, f"{name}_{per}") for name in ("cpu_package_energy_j", "gpu_energy_j")]
    found = [p for p in parts if p is not None]
    return sum(found) if found else None


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    unit: str
    kind: str  # a report.tables format
    read: Callable[[Record], float | None]
    gate_metric: str | None = None  # the gate's metric name, for its interval and verdict
    relative: bool = False  # the gate's interval is of the relative change (speed)


FIGURES = (
    Figure("al", "AL", "tokens / step", "f3", lambda r: r.acceptance.acceptance_length, "AL"),
    Figure("ar", "AR", "share", "f3", lambda r: r.acceptance.acceptance_rate, "AR"),
    Figure("output_tps", "output TPS", "tok/s", "f1", lambda r: r.speed.output_tps, "output TPS", True),
    Figure("user_tps", "user TPS (median)", "tok/s", "f1", lambda r: r.speed.user_tps_median, "user TPS median", True),
    Figure("ttft", "TTFT (median)", "s", "s", lambda r: r.speed.ttft_median_s, "TTFT median", True),
    Figure("cpu_s_per_token", "CPU s / output token", "ms", "ms", lambda r: _cost(r, "cpu_s_per_output_token")),
    Figure("cpu_s_per_accepted", "CPU s / accepted token", "ms", "ms", lambda r: _cost(r, "cpu_s_per_accepted_token")),
    Figure("energy_per_token", "J / output token", "J", "f3", lambda r: _energy(r, "per_output_token")),
    Figure("energy_per_accepted", "J / accepted token", "J", "f3", lambda r: _energy(r, "per_accepted_token")),
    Figure("cpu_cost_vs_none", "CPU s per token, none ÷ this", "x", "x",
           lambda r: (r.section(VS_NONE) or {}).get("cpu_s_per_output_token")),
)


def hardware(run: Run, record: Record) -> str:
    """The GPUs a case ran on (NVML's names in its cost section, or a baseline's fingerprint), or CPU."""
    source = ((record.section(COST) or {}).get("sources") or {}).get("gpu_energy_j") or ""
    names = sorted(set(re.findall(r"GPU [^ ]+ \(([^)]*)\)", source))) or [str(g) for g in run.machine.get("gpus") or []]
    share = gpu_share(record.case.devices)
    return (", ".join(names) + (f" ({share})" if share else "")) if names else (share or "CPU")


def series_key(run: Run, record: Record) -> tuple[Any, ...]:
    c = record.case
    return (c.split, c.label, c.concurrency, c.max_tokens, c.temperature, c.drafter.method, c.model_sha, hardware(run, record))


@dataclass
class Point:
    run: Run
    run_index: int  # position among all runs, oldest first
    record: Record
    changes: list[str] = field(default_factory=list)  # what changed since the previous point
    comparison: CaseComparison | None = None  # the gate's verdict against the previous point
    marks: dict[str, str] = field(default_factory=dict)  # figure key -> shift description

    def metric(self, name: str) -> MetricResult | None:
        if self.comparison is None:
            return None
        return next((m for m in self.comparison.metrics if m.metric == name), None)

    def band(self, figure: Figure, previous: float | None) -> tuple[float, float] | None:
        """The gate's interval of the change from the previous point, on the previous point's value."""
        result = self.metric(figure.gate_metric) if figure.gate_metric else None
        if result is None or result.ci is None or previous is None or None in result.ci:
            return None
        low, high = result.ci
        if figure.relative:
            return previous * (1 + low), previous * (1 + high)
        return previous + low, previous + high


@dataclass
class Series:
    key: tuple[Any, ...]
    points: list[Point]

    @property
    def title(self) -> str:
        split, label, concurrency, _, _, method, sha, hw = self.key
        return f"{split} {label} · {method} · c{concurrency} · model {str(sha)[:10]} · {hw}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")

    def values(self, figure: Figure) -> list[float | None]:
        return [figure.read(p.record) for p in self.points]


def _changes(before: Point, after: Point) -> list[str]:
    b, a = before.record.case, after.record.case
    out = []
    if (b.engine, b.engine_version) != (a.engine, a.engine_version):
        out.append(f"engine {b.engine} {b.engine_version} → {a.engine} {a.engine_version}")
    if str(b.drafter) != str(a.drafter):
        out.append(f"drafter {b.drafter} → {a.drafter}")
    if before.run.speedbench_version != after.run.speedbench_version:
        out.append(f"speedbench {before.run.speedbench_version} → {after.run.speedbench_version}")
    if b.rounds != a.rounds:
        out.append(f"rounds {b.rounds} → {a.rounds}")
    return out


def _mark(points: Sequence[Point], i: int, figure: Figure) -> str | None:
    assert figure.gate_metric is not None
    here = points[i].metric(figure.gate_metric)
    if here is None or here.status not in (REGRESSED, IMPROVED):
        return None
    word = "drop" if (here.status == REGRESSED) == (figure.key != "ttft") else "rise"
    word = f"{word} ({here.status})"
    if i + 1 == len(points):
        return f"{word}, latest run: not yet confirmed"
    following = points[i + 1]
    after = following.metric(figure.gate_metric)
    opposite = IMPROVED if here.status == REGRESSED else REGRESSED
    if after is not None and after.status == opposite:
        return f"{word}, reverted at {following.run.label}"
    return f"{word}, sustained"


def build_series(runs: Sequence[Run], thresholds: Thresholds | None = None) -> list[Series]:
    """Every series over ``runs`` (oldest first), each step judged by the gate against the step before."""
    limits = thresholds or Thresholds()
    grouped: dict[tuple[Any, ...], list[Point]] = {}
    for index, run in enumerate(runs):
        for record in run.records:
            grouped.setdefault(series_key(run, record), []).append(Point(run, index, record))
    family = max(1, len(grouped))
    out = []
    for key, points in grouped.items():
        for before, after in pairwise(points):
            after.changes = _changes(before, after)
            # Hardware and model are the same within a series: what is left (a drafter, an engine) is
            # the change being tracked, so speed is judged across it (the gate's "force").
            after.comparison = compare_case(after.record, before.record, baseline_path=before.run.label,
                                            thresholds=limits, family_size=family, current_hardware={},
                                            baseline_hardware={}, force=True)
        for i in range(1, len(points)):
            for figure in FIGURES:
                if figure.gate_metric:
                    mark = _mark(points, i, figure)
                    if mark:
                        points[i].marks[figure.key] = mark
        out.append(Series(key, points))
    return sorted(out, key=lambda s: tuple(str(part) for part in s.key))
