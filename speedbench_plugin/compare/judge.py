"""Judge one case's record against its baseline record: per metric, then the case.

Decision per metric (direction-aware, see docs/guides/regression-gate.md):

* acceptance (AL, AR, per-position rate): paired over the same requests (question, turn; rounds
  pooled). Regressed when the drop exceeds max(ABS, REL x baseline), the interval of the change
  lies wholly below zero, and the family-adjusted one-sided p-value is <= alpha. Identical
  per-request counts (greedy, same engine) are reported as ``identical`` without statistics.
* speed (output TPS, median user TPS, median TTFT), per round: regressed when the change of the
  medians is beyond max(REL, CV_FACTOR x baseline CV) in the bad direction (TPS down, TTFT up),
  the interval of the relative change excludes zero on that side, and the adjusted one-sided
  Mann-Whitney U p-value is <= alpha. Needs ``min_rounds`` rounds on both sides.

Adjustment: Holm's step-down across the case's metrics of one kind at level alpha / m, where m
is the number of compared cases in the session (a per-case Bonferroni bound, because a case is
judged when it finishes, before the other cases' p-values exist). The session-wide Holm
procedure is re-run at the end and lists "borderline" cases it alone would flag.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import zip_longest
from typing import Any

from speedbench_plugin.compare import stats
from speedbench_plugin.compare.baseline import HARDWARE_COMPARABLE_KEYS
from speedbench_plugin.compare.settings import Thresholds
from speedbench_plugin.record import Record

REGRESSED, IMPROVED, UNCHANGED, IDENTICAL, NOT_COMPARABLE = (
    "regressed", "improved", "unchanged", "identical", "not comparable",
)
STATUS_ORDER = (REGRESSED, IMPROVED, UNCHANGED, IDENTICAL, NOT_COMPARABLE)


@dataclass
class MetricResult:
    metric: str
    kind: str  # "acceptance" or "speed"
    status: str
    baseline: float | None = None
    current: float | None = None
    change: float | None = None  # acceptance: absolute; speed: relative
    ci: tuple[float, float] | None = None  # interval of ``change``
    threshold: float | None = None  # on the scale of ``change``
    p_worse: float | None = None  # raw one-sided
    p_better: float | None = None
    p_adj: float | None = None  # family-adjusted, in the direction of the verdict
    adj_worse: float | None = None
    adj_better: float | None = None
    beyond_worse: bool = False  # effect and interval say worse (used by the session-wide Holm)
    n: int | None = None  # paired requests, or rounds (baseline, current) as n_baseline
    n_current: int | None = None
    note: str = ""
    unit: str = ""


@dataclass
class CaseComparison:
    case_id: str
    baseline_case_id: str | None
    baseline_path: str
    status: str
    metrics: list[MetricResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    family_size: int = 1
    confidence: float = 0.99
    outputs: str | None = None  # SAME_OUTPUTS, DIFFERENT_OUTPUTS, or None where a run hashed none

    def to_dict(self) -> dict[str, Any]:
        clean: dict[str, Any] = _finite(asdict(self))
        return clean


def _finite(value: Any) -> Any:
    """NaN and inf become None: records travel through JSON and xdist."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- per-request units ----------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One (question, turn) with its counts summed over rounds."""

    step_tokens: int  # the AL numerator, from the record's step source
    steps: int
    histogram: tuple[int, ...]
    accepted: int | None  # engine counters, None when any round lacked them
    draft_tokens: int | None


def units_of(record: Record, stream: bool = False) -> dict[tuple[str, int], Unit]:
    """Per (question, turn), summed over rounds. ``stream``: the stream's steps instead of the
    record's histogram source (used when two records' sources differ)."""
    parts: dict[tuple[str, int], list[Any]] = {}
    for row in record.requests:
        if row.error:
            continue
        key = (row.question_id, row.turn)
        tokens, steps, hist = ((row.stream_decode_tokens, row.stream_steps, row.stream_step_histogram) if stream
                               else (row.step_tokens, row.steps, row.step_histogram))
        acc = parts.setdefault(key, [0, 0, [], 0, 0, True])
        acc[0] += tokens
        acc[1] += steps
        acc[2] = [a + b for a, b in zip_longest(acc[2], hist, fillvalue=0)]
        if row.counters is None:
            acc[5] = False
        else:
            acc[3] += int(row.counters.get("num_accepted_tokens") or 0)
            acc[4] += int(row.counters.get("num_draft_tokens") or 0)
    return {key: Unit(a[0], a[1], tuple(a[2]), a[3] if a[5] else None, a[4] if a[5] else None)
            for key, a in parts.items()}


def acceptance_ratios(base: list[Unit], cur: list[Unit], k_base: int, k_cur: int) -> dict[str, stats.PairedRatio]:
    def paired(parts: Callable[[Unit], tuple[float, float]]) -> stats.PairedRatio:
        b = [parts(u) for u in base]
        c = [parts(u) for u in cur]
        return stats.PairedRatio.of([x[0] for x in b], [x[1] for x in b], [x[0] for x in c], [x[1] for x in c])

    out = {"AL": paired(lambda u: (float(u.step_tokens), float(u.steps)))}
    if all(u.accepted is not None for u in base + cur):
        # AR from the engine's counters only: a stream cannot know what was drafted.
        out["AR"] = paired(lambda u: (float(u.accepted or 0), float(u.draft_tokens or 0)))
    for position in range(min(k_base, k_cur)):
        out[f"pp[{position}]"] = paired(partial(_pp_parts, position=position))
    return out


def _pp_parts(u: Unit, position: int) -> tuple[float, float]:
    return float(sum(u.histogram[position + 1:])), float(sum(u.histogram))


# --- speed per round ------------------------------------------------------------------------


def _per_round_median(record: Record, key: str) -> list[float]:
    by_round: dict[int, list[float]] = defaultdict(list)
    for row in record.requests:
        value = getattr(row, key)
        if not row.error and value is not None and math.isfinite(value):
            by_round[row.round].append(float(value))
    return [statistics.median(by_round[r]) for r in sorted(by_round)]


@dataclass(frozen=True)
class SpeedMetric:
    name: str
    unit: str
    higher_is_better: bool
    per_round: Callable[[Record], list[float]]


SPEED_METRICS = (
    SpeedMetric("output TPS", "tok/s", True, lambda r: [v for v in r.speed.output_tps_rounds if v is not None]),
    SpeedMetric("user TPS median", "tok/s", True, lambda r: _per_round_median(r, "user_tps")),
    SpeedMetric("TTFT median", "s", False, lambda r: _per_round_median(r, "ttft_s")),
)


def _cost_per_round(record: Record) -> list[float]:
    """CPU milliseconds per output token in each measured round, as the record's cost section gives them."""
    per_round = ((record.section("cost") or {}).get("per_round") or {}).get("cpu_s_per_output_token") or []
    return [1000.0 * float(v) for v in per_round if v is not None and math.isfinite(v)]


# Judged only with --speedbench-compare-cost (Thresholds.cost); lower is better.
COST_METRIC = SpeedMetric("CPU per output token", "ms/tok", False, _cost_per_round)
NO_COST_FIGURE = "not judged: no cost figure"


def speed_metrics(t: Thresholds) -> tuple[SpeedMetric, ...]:
    """The figures the speed family judges: the cost per token too when opted in."""
    return (*SPEED_METRICS, COST_METRIC) if t.cost else SPEED_METRICS


# --- fingerprints ---------------------------------------------------------------------------


def gpu_share(devices: str | None) -> str | None:
    """How many GPUs the case's engine had: under xdist which worker (and so which GPUs of a
    machine) runs a case changes from run to run, so the ids themselves are not compared."""
    if devices is None:
        return None
    count = len([d for d in devices.split(",") if d.strip()])
    return f"{count} GPU{'s' if count != 1 else ''}"


def _case_facts(record: Record) -> dict[str, Any]:
    case = record.case
    return {"model_sha": case.model_sha, "drafter": str(case.drafter), "k": case.k, "concurrency": case.concurrency,
            "devices": gpu_share(case.devices), "max_tokens": case.max_tokens, "temperature": case.temperature}


def _differences(base: dict[str, Any], cur: dict[str, Any], keys: Sequence[str]) -> list[str]:
    return [f"{key} {base.get(key)!r} -> {cur.get(key)!r}" for key in keys if base.get(key) != cur.get(key)]


def resolved_config(record: Record) -> dict[str, Any] | None:
    """The engine configuration as the running engine resolved it (what must be equal for a
    comparison), where the engine could be asked."""
    resolved = record.engine.get("resolved_config")
    comparable = resolved.get("comparable") if isinstance(resolved, dict) else None
    return comparable if isinstance(comparable, dict) else None


def config_differences(base: Record, cur: Record) -> list[str]:
    """Each resolved engine setting that differs, named: ``engine config KEY A -> B``."""
    b, c = resolved_config(base), resolved_config(cur)
    if b is None or c is None:
        return []
    return [f"engine config {key} {b.get(key)!r} -> {c.get(key)!r}" for key in sorted(set(b) | set(c))
            if b.get(key) != c.get(key)]


def speed_blockers(base: Record, cur: Record, base_hw: dict[str, Any], cur_hw: dict[str, Any]) -> list[str]:
    """What makes throughput incomparable: other hardware, model, drafter, load or engine configuration."""
    return _differences(_case_facts(base), _case_facts(cur), ("model_sha", "drafter", "k", "concurrency", "devices")) + \
        _differences(base_hw, cur_hw, HARDWARE_COMPARABLE_KEYS) + config_differences(base, cur)


SAME_OUTPUTS, DIFFERENT_OUTPUTS = "same", "different"


def output_identity(base: Record, cur: Record) -> tuple[str | None, str]:
    """Whether both runs produced the same output tokens (their requests' sha256), and a note
    that says so: "same outputs, different speed" against "different outputs"."""
    if base.outputs_sha256 is None or cur.outputs_sha256 is None:
        which = "baseline" if base.outputs_sha256 is None else "current run"
        return None, f"outputs not compared: the {which}'s requests carry no output hashes"
    if base.outputs_sha256 == cur.outputs_sha256:
        return SAME_OUTPUTS, (f"same outputs: every request produced the same tokens (outputs sha256 "
                              f"{cur.outputs_sha256[:12]}); a speed change is the engine's, on the same work")
    base_rows = {(r.question_id, r.turn, r.round): r.output_sha256 for r in base.requests}
    cur_rows = {(r.question_id, r.turn, r.round): r.output_sha256 for r in cur.requests}
    paired = sorted(set(base_rows) & set(cur_rows))
    differ = [key for key in paired if base_rows[key] != cur_rows[key]]
    named = ", ".join(f"{qid} turn {turn + 1}" for qid, turn, _ in differ[:3]) + (" ..." if len(differ) > 3 else "")
    return DIFFERENT_OUTPUTS, (f"different outputs: {len(differ)} of {len(paired)} paired requests produced other tokens"
                               + (f" ({named})" if differ else "")
                               + (f"; {len(set(base_rows) ^ set(cur_rows))} request(s) in one run only"
                                  if set(base_rows) != set(cur_rows) else "")
                               + ": acceptance and speed changes may come from the different work")


def workload_blockers(base: Record, cur: Record) -> list[str]:
    """What makes every figure incomparable: another workload."""
    return _differences(_case_facts(base), _case_facts(cur), ("max_tokens", "temperature"))


# --- the case -------------------------------------------------------------------------------


def _adjust(results: list[MetricResult], family_size: int) -> None:
    """Holm across this case's tests of one kind, Bonferroni-scaled by the number of cases."""
    tested = [r for r in results if r.p_worse is not None and r.status != IDENTICAL]
    for attr in ("p_worse", "p_better"):
        adjusted = stats.holm_adjusted([getattr(r, attr) for r in tested])
        for r, p in zip(tested, adjusted):
            setattr(r, "adj_worse" if attr == "p_worse" else "adj_better", min(1.0, p * family_size))


def _decide(r: MetricResult, alpha: float, worse_sign: int) -> None:
    """worse_sign: -1 when a lower value is worse (AL, TPS), +1 when higher is worse (TTFT)."""
    if r.change is None or r.ci is None or r.threshold is None or None in r.ci:
        r.status = NOT_COMPARABLE
        r.note = r.note or "no interval (too few steps)"
        return
    worse_effect = worse_sign * r.change > r.threshold
    better_effect = -worse_sign * r.change > r.threshold
    lo, hi = r.ci
    worse_ci = hi < 0 if worse_sign < 0 else lo > 0
    better_ci = lo > 0 if worse_sign < 0 else hi < 0
    adj_worse = 1.0 if r.adj_worse is None else r.adj_worse
    adj_better = 1.0 if r.adj_better is None else r.adj_better
    r.beyond_worse = worse_effect and worse_ci
    if worse_effect and worse_ci and adj_worse <= alpha:
        r.status, r.p_adj = REGRESSED, adj_worse
    elif better_effect and better_ci and adj_better <= alpha:
        r.status, r.p_adj = IMPROVED, adj_better
    else:
        r.status, r.p_adj = UNCHANGED, min(adj_worse, adj_better)


def compare_acceptance(base: Record, cur: Record, t: Thresholds, family_size: int, seed: int) -> tuple[list[MetricResult], list[str]]:
    k_base, k_cur = base.case.k, cur.case.k
    if not k_base or not k_cur:
        if k_base == k_cur:
            return [], ["acceptance not applicable: no drafter"]
        return [MetricResult("AL", "acceptance", NOT_COMPARABLE, note=f"k {k_base} -> {k_cur}")], []
    notes = []
    same_source = base.acceptance.histogram_source == cur.acceptance.histogram_source
    if not same_source:
        notes.append(f"acceptance compared on the stream's steps: the step histograms came from "
                     f"{base.acceptance.histogram_source} (baseline) and {cur.acceptance.histogram_source} (current)")
    base_units, cur_units = units_of(base, stream=not same_source), units_of(cur, stream=not same_source)
    common = sorted(set(base_units) & set(cur_units))
    unpaired = len(set(base_units) ^ set(cur_units))
    if unpaired:
        notes.append(f"{unpaired} request(s) only in one run were left out of the pairing")
    if len(common) < t.min_pairs:
        reason = (f"only {len(common)} paired requests (need {t.min_pairs}: more prompts per case, "
                  "--speedbench-num-requests, or --speedbench-compare-min-pairs)")
        return [MetricResult("AL", "acceptance", NOT_COMPARABLE, n=len(common), note=reason)], notes
    b, c = [base_units[key] for key in common], [cur_units[key] for key in common]
    ratios = acceptance_ratios(b, c, k_base, k_cur)
    if "AR" not in ratios:
        notes.append("AR not compared: per-request engine counters are missing in one run")
    # The figures shown are the records' own (the table's); the statistics pair the requests.
    shown = {"AL": (base.acceptance.acceptance_length, cur.acceptance.acceptance_length) if same_source
             else (base.acceptance.acceptance_length_stream, cur.acceptance.acceptance_length_stream),
             "AR": (base.acceptance.acceptance_rate, cur.acceptance.acceptance_rate)}
    if k_base == k_cur and b == c:
        return [
            MetricResult(name, "acceptance", IDENTICAL, *shown.get(name, (ratio.baseline, ratio.current)), 0.0, (0.0, 0.0),
                         n=len(common), note="identical per-request counts")
            for name, ratio in ratios.items()
        ], notes
    shifts = stats.paired_bootstrap(ratios, confidence=t.confidence, resamples=t.resamples, seed=seed)
    results = []
    for name, shift in shifts.items():
        absolute, relative = (t.al_abs, t.al_rel) if name == "AL" else (t.rate_abs, t.rate_rel)
        baseline, current = shown.get(name, (shift.baseline, shift.current))
        results.append(MetricResult(
            name, "acceptance", UNCHANGED, baseline, current, shift.change,
            (shift.ci_low, shift.ci_high), stats.drop_threshold(shift.baseline, absolute, relative),
            shift.p_worse, shift.p_better, n=shift.n,
        ))
    _adjust(results, family_size)
    for r in results:
        _decide(r, t.alpha, worse_sign=-1)
    return results, notes


def _speed_not_comparable(reasons: list[str], metrics: Sequence[SpeedMetric] = SPEED_METRICS) -> list[MetricResult]:
    note = "; ".join(reasons)
    return [MetricResult(m.name, "speed", NOT_COMPARABLE, note=note, unit=m.unit) for m in metrics]


def compare_speed(base: Record, cur: Record, t: Thresholds, family_size: int, seed: int,
                  blockers: list[str], force: bool) -> tuple[list[MetricResult], list[str]]:
    n_base, n_cur = base.case.rounds, cur.case.rounds
    reasons, notes = [], []
    if blockers and not force:
        reasons.append("fingerprint differs: " + "; ".join(blockers) + " (--speedbench-compare-force judges it anyway)")
    elif blockers:
        notes.append(f"speed judged despite: {'; '.join(blockers)} (forced)")
    if min(n_base, n_cur) < t.min_rounds:
        fewest = min(n_base, n_cur)
        reasons.append(f"only {fewest} round{'s' if fewest != 1 else ''} (baseline {n_base}, current {n_cur}; "
                       f"need {t.min_rounds}: --speedbench-rounds)")
    for name, record in (("baseline", base), ("current", cur)):
        if record.speed.client_bound:
            reasons.append(f"the {name} run was client-bound ({'; '.join(record.speed.client_bound_reasons)})")
    metrics = speed_metrics(t)
    if reasons:
        return _speed_not_comparable(reasons, metrics), notes
    results = []
    for metric in metrics:
        b, c = metric.per_round(base), metric.per_round(cur)
        if metric is COST_METRIC and (not b or not c):
            sides = [name for name, values in (("baseline", b), ("current", c)) if not values]
            results.append(MetricResult(metric.name, "speed", NOT_COMPARABLE, unit=metric.unit,
                                        note=f"{NO_COST_FIGURE} in the {' and '.join(sides)} run"))
            continue
        if min(len(b), len(c)) < 2:
            results.append(MetricResult(metric.name, "speed", NOT_COMPARABLE, note="no per-round values", unit=metric.unit))
            continue
        shift = stats.speed_shift(b, c, higher_is_better=metric.higher_is_better, confidence=t.confidence, seed=seed)
        results.append(MetricResult(
            metric.name, "speed", UNCHANGED, shift.baseline, shift.current, shift.rel_change,
            (shift.ci_low, shift.ci_high), stats.speed_threshold(shift.baseline_cv, t.speed_rel, t.cv_factor),
            shift.p_worse, shift.p_better, n=shift.n_baseline, n_current=shift.n_current, unit=metric.unit,
            note=f"baseline CV {shift.baseline_cv:.1%}",
        ))
    tested = [r for r in results if r.p_worse is not None]
    floor = stats.smallest_mannwhitney_p(min(n_base, n_cur), min(n_base, n_cur))
    if tested and floor * len(tested) * family_size > t.alpha:
        notes.append(
            f"with {min(n_base, n_cur)} rounds the smallest possible p ({floor:.1e}) cannot pass alpha {t.alpha} "
            f"over {family_size} case(s) x {len(tested)} metrics: add rounds to judge speed"
        )
    _adjust(tested, family_size)
    for r in tested:
        higher_is_better = next(m.higher_is_better for m in metrics if m.name == r.metric)
        _decide(r, t.alpha, worse_sign=-1 if higher_is_better else 1)
    return results, notes


# What a user gains from: tokens per step and the speed figures. AR and the per-position rates
# explain AL; a drafter that drafts less often scores a higher AR with a lower AL, so a rise in
# them alone does not make a case "improved" (any significant drop still makes it "regressed").
HEADLINE = frozenset({"AL", *(m.name for m in SPEED_METRICS), COST_METRIC.name})
SIDE_GAINS_NOTE = "AR or per-position rates improved but AL did not: not counted as an improvement"


def side_gains_only(status: str, metrics: list[MetricResult]) -> bool:
    """A case that passes unchanged although AR or a per-position rate rose significantly."""
    return status in (UNCHANGED, IDENTICAL) and any(m.status == IMPROVED for m in metrics)


def case_status(metrics: list[MetricResult]) -> str:
    statuses = {m.status for m in metrics}
    if REGRESSED in statuses:
        return REGRESSED
    if any(m.status == IMPROVED and m.metric in HEADLINE for m in metrics):
        return IMPROVED
    compared = statuses - {NOT_COMPARABLE}
    if not compared:
        return NOT_COMPARABLE
    return IDENTICAL if compared == {IDENTICAL} else UNCHANGED


def compare_case(
    current: Record,
    baseline: Record,
    *,
    baseline_path: str,
    thresholds: Thresholds,
    family_size: int,
    current_hardware: dict[str, Any],
    baseline_hardware: dict[str, Any],
    force: bool = False,
) -> CaseComparison:
    out = CaseComparison(current.case_id, baseline.case_id, baseline_path, NOT_COMPARABLE,
                         family_size=family_size, confidence=thresholds.confidence)
    b, c = baseline.case, current.case
    if (c.engine, c.engine_version) != (b.engine, b.engine_version):
        out.notes.append(f"engine {b.engine} {b.engine_version} (baseline) -> {c.engine} {c.engine_version} (current)")
    if str(c.drafter) != str(b.drafter):
        out.notes.append(f"drafter {b.drafter} (baseline) -> {c.drafter} (current)")
    if c.model_sha != b.model_sha:
        out.notes.append(f"model differs: sha {b.model_sha[:12]} (baseline) -> {c.model_sha[:12]} (current)")
    if c.devices != b.devices and gpu_share(c.devices) == gpu_share(b.devices):
        out.notes.append(f"devices {b.devices} (baseline) -> {c.devices} (current): as many GPUs, speed compared")
    out.outputs, identity = output_identity(baseline, current)
    out.notes.append(identity)
    out.notes += config_differences(baseline, current)
    blockers = workload_blockers(baseline, current)
    if blockers:
        out.notes.append("other workload: " + "; ".join(blockers))
        return out
    seed = stats.seed_for(out.case_id)
    acceptance, notes_a = compare_acceptance(baseline, current, thresholds, family_size, seed)
    speed, notes_s = compare_speed(baseline, current, thresholds, family_size, seed,
                                   speed_blockers(baseline, current, baseline_hardware, current_hardware), force)
    out.metrics = acceptance + speed
    out.notes += notes_a + notes_s
    out.status = case_status(out.metrics)
    if side_gains_only(out.status, out.metrics):
        out.notes.append(SIDE_GAINS_NOTE)
    return out


def not_judged_reasons(comparison: dict[str, Any]) -> list[str]:
    """Every reason a case (or a part of it) was not judged, each once."""
    reasons: list[str] = []
    for metric in comparison.get("metrics") or []:
        if metric["status"] == NOT_COMPARABLE and metric.get("note"):
            text = f"{metric['kind']}: {metric['note']}"
            if text not in reasons:
                reasons.append(text)
    for note in comparison.get("notes") or []:
        if note.startswith(("other workload", "not in the baseline", "ambiguous", "acceptance not applicable")) \
                and note not in reasons:
            reasons.append(note)
    return reasons


# --- words ----------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def describe_metric(m: dict[str, Any], confidence: float = 0.99) -> str:
    """One line: metric, baseline -> current, change, interval, threshold, p."""
    level = f"{confidence:.0%}" if confidence * 100 == round(confidence * 100) else f"{confidence:.1%}"
    if m["status"] == NOT_COMPARABLE:
        return f"{m['metric']}: not comparable ({m.get('note') or '?'})"
    if m["kind"] == "acceptance":
        if m["status"] == IDENTICAL:
            return f"{m['metric']} {_num(m['baseline'])} -> {_num(m['current'])}: identical ({m['n']} paired requests)"
        rel = m["change"] / abs(m["baseline"]) if m["baseline"] else float("nan")
        ci = m.get("ci") or (None, None)
        return (
            f"{m['metric']} {_num(m['baseline'])} -> {_num(m['current'])}: change {m['change']:+.3f} ({rel:+.1%}), "
            f"{level} CI [{_num(ci[0])}, {_num(ci[1])}], threshold {m['threshold']:.3f}, "
            f"p_adj {m['p_adj']:.1e}, {m['n']} paired requests"
        )
    ci = m.get("ci") or (None, None)
    digits = 3 if m.get("unit") in ("s", COST_METRIC.unit) else 1
    ci_text = f"[{ci[0]:+.1%}, {ci[1]:+.1%}]" if None not in ci else "[-]"
    return (
        f"{m['metric']} (median of {m['n']} vs {m['n_current']} rounds) {_num(m['baseline'], digits)} -> "
        f"{_num(m['current'], digits)} {m.get('unit', '')}: change {m['change']:+.1%}, {level} CI {ci_text}, "
        f"threshold {m['threshold']:.1%} ({m.get('note')}), p_adj {m['p_adj']:.1e}"
    )


def failure_message(comparison: dict[str, Any]) -> str:
    lines = [f"speedbench compare: regressed against {comparison['baseline_path']}"
             + (f" (baseline case {comparison['baseline_case_id']})" if comparison["baseline_case_id"] != comparison["case_id"] else "")]
    lines += [f"  {note}" for note in comparison["notes"]]
    for metric in moved_metrics(comparison):
        lines.append(f"  {metric['status'].upper()} " + describe_metric(metric, comparison["confidence"]))
    return "\n".join(lines)


def moved_metrics(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics that regressed or improved, and AL whatever it did: a verdict on AR or a
    per-position rate alone would hide the figure that decides the speed."""
    return [m for m in comparison["metrics"]
            if m["status"] in (REGRESSED, IMPROVED) or (m["metric"] == "AL" and m["status"] != NOT_COMPARABLE)]
