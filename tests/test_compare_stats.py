"""The gate's statistics and per-case judgement on synthetic data (no engine, no pytest run)."""
from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
from recordkit import make_record

from speedbench_plugin.compare import judge, stats
from speedbench_plugin.compare.matching import index_by_key, match_key
from speedbench_plugin.compare.settings import Thresholds
from speedbench_plugin.record import Record, RequestRow

# --- stats -------------------------------------------------------------------------------------


def _paired_al(n: int, drop: float, seed: int = 1) -> stats.PairedRatio:
    """Per request: decode tokens and steps; the current run emits ``drop`` fewer tokens per step."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(20, 60, size=n).astype(float)
    al = rng.uniform(1.3, 2.2, size=n)
    noise = rng.normal(0.0, 0.05, size=n)
    return stats.PairedRatio.of(al * steps, steps, (al - drop + noise) * steps, steps)


def test_paired_bootstrap_finds_a_real_drop() -> None:
    shift = stats.paired_bootstrap({"AL": _paired_al(40, drop=0.2)}, seed=3)["AL"]
    assert shift.change == pytest.approx(-0.2, abs=0.03)
    assert shift.ci_high < 0 and shift.ci_low < shift.change < shift.ci_high
    assert shift.p_worse < 1e-6 and shift.p_better > 0.99


def test_paired_bootstrap_does_not_call_noise_a_drop() -> None:
    shift = stats.paired_bootstrap({"AL": _paired_al(40, drop=0.0)}, seed=3)["AL"]
    assert shift.ci_low < 0 < shift.ci_high
    assert shift.p_worse > 0.01


def test_paired_bootstrap_of_identical_runs_is_exactly_zero() -> None:
    same = stats.PairedRatio.of([3, 5, 8], [2, 3, 4], [3, 5, 8], [2, 3, 4])
    shift = stats.paired_bootstrap({"AL": same})["AL"]
    assert (shift.change, shift.ci_low, shift.ci_high) == (0.0, 0.0, 0.0)
    assert shift.p_worse == shift.p_better == 1.0


def test_paired_bootstrap_is_reproducible_per_seed() -> None:
    data = {"AL": _paired_al(30, drop=0.05)}
    first = stats.paired_bootstrap(data, seed=7, resamples=800)["AL"]
    again = stats.paired_bootstrap(data, seed=7, resamples=800)["AL"]
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)


def test_paired_ratio_rejects_unpaired_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        stats.PairedRatio.of([1, 2], [1, 2], [1], [1])


def test_speed_shift_flags_complete_separation_with_the_exact_p() -> None:
    base = [100.0, 101.0, 99.0, 100.5, 98.5, 100.2, 99.7, 101.3]
    cur = [v * 0.7 for v in base]
    shift = stats.speed_shift(base, cur, higher_is_better=True, seed=1)
    assert shift.rel_change == pytest.approx(-0.3, abs=1e-9)
    assert shift.p_worse == pytest.approx(stats.smallest_mannwhitney_p(8, 8)) == pytest.approx(1 / 12870)
    assert shift.p_better > 0.99
    assert shift.ci_high < 0


def test_speed_shift_is_direction_aware_for_latency() -> None:
    base = [0.10, 0.11, 0.10, 0.12, 0.11, 0.10]
    slower = [v * 1.5 for v in base]
    assert stats.speed_shift(base, slower, higher_is_better=False).p_worse < 0.01  # latency up: worse
    assert stats.speed_shift(base, slower, higher_is_better=True).p_better < 0.01  # the same move for TPS: better


def test_speed_shift_of_interleaved_noise_is_not_significant() -> None:
    rng = random.Random(5)
    base = [100 * rng.uniform(0.97, 1.03) for _ in range(8)]
    cur = [100 * rng.uniform(0.97, 1.03) for _ in range(8)]
    shift = stats.speed_shift(base, cur, higher_is_better=True)
    assert shift.p_worse > 0.01 and abs(shift.rel_change) < stats.speed_threshold(shift.baseline_cv, 0.05, 3)


def test_holm_adjusted_matches_the_textbook_example() -> None:
    assert stats.holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm_adjusted([]) == []


def test_thresholds_take_the_larger_of_absolute_and_relative() -> None:
    assert stats.drop_threshold(1.5, 0.02, 0.01) == pytest.approx(0.02)
    assert stats.drop_threshold(3.0, 0.02, 0.01) == pytest.approx(0.03)
    assert stats.speed_threshold(0.01, 0.05, 3) == pytest.approx(0.05)
    assert stats.speed_threshold(0.03, 0.05, 3) == pytest.approx(0.09)


# --- judge on synthetic records -----------------------------------------------------------------


def _record(case_id: str = "test_q[fake-ngram_k3-coding]", *, k: int = 3, accept: float = 0.6, n: int = 20,
            rounds: int = 1, tps: float = 100.0, tps_noise: float = 0.01, seed: int = 0,
            engine_version: str = "1", max_tokens: int = 64) -> Record:
    rng = random.Random(seed)
    rows = []
    for r in range(rounds):
        for q in range(n):
            req = random.Random(f"{q}:{accept}")  # same per request across rounds, as greedy decoding
            hist = [0] * (k + 1)
            for _ in range(30):
                j = 0
                while j < k and req.random() < accept:
                    j += 1
                hist[j] += 1
            accepted = sum(j * c for j, c in enumerate(hist))
            rows.append(RequestRow(
                f"q{q}", 0, r, None, 10, sum((j + 1) * c for j, c in enumerate(hist)), steps=sum(hist),
                step_tokens=sum((j + 1) * c for j, c in enumerate(hist)), step_histogram=hist,
                user_tps=tps / 4 * rng.uniform(1 - tps_noise, 1 + tps_noise), ttft_s=0.05,
                counters={"num_accepted_tokens": accepted, "num_draft_tokens": k * sum(hist)},
            ))
    record = make_record(f"ngram:k={k}", category="coding", rounds=rounds, requests=tuple(rows), max_tokens=max_tokens,
                         output_tps_rounds=[tps * rng.uniform(1 - tps_noise, 1 + tps_noise) for _ in range(rounds)])
    return dataclasses.replace(record, case=dataclasses.replace(record.case, case_id=case_id, engine_version=engine_version))


def _compare(cur: Record, base: Record, family_size: int = 1, force: bool = False, hw: dict | None = None) -> judge.CaseComparison:
    return judge.compare_case(
        cur, base, baseline_path="b.json", thresholds=Thresholds(resamples=1000), family_size=family_size,
        current_hardware=hw or {"cpu_model": "x", "gpus": []}, baseline_hardware={"cpu_model": "x", "gpus": []},
        force=force,
    )


def _metric(comparison: judge.CaseComparison, name: str) -> judge.MetricResult:
    return next(m for m in comparison.metrics if m.metric == name)


def test_identical_counts_are_identical_not_merely_unchanged() -> None:
    result = _compare(_record(), _record())
    assert result.status == judge.IDENTICAL
    assert {m.metric for m in result.metrics if m.kind == "acceptance"} == {"AL", "AR", "pp[0]", "pp[1]", "pp[2]"}


def test_acceptance_drop_regresses_with_figures() -> None:
    result = _compare(_record(accept=0.45), _record(accept=0.6))
    assert result.status == judge.REGRESSED
    al = _metric(result, "AL")
    assert al.status == judge.REGRESSED and al.change < -al.threshold and al.ci[1] < 0 and al.p_adj <= 0.01
    line = judge.describe_metric(result.to_dict()["metrics"][0], result.confidence)
    assert line.startswith("AL ") and "99% CI [" in line and "20 paired requests" in line


def test_acceptance_rise_is_an_improvement() -> None:
    assert _compare(_record(accept=0.75), _record(accept=0.6)).status == judge.IMPROVED


def test_a_drop_below_the_threshold_is_unchanged() -> None:
    base = _record()
    cur = _record()
    first = cur.requests[0]  # one step of one request accepted one token less
    hist = [first.step_histogram[0] + 1, first.step_histogram[1] - 1, *first.step_histogram[2:]]
    changed = dataclasses.replace(first, step_histogram=hist, step_tokens=first.step_tokens - 1)
    cur = dataclasses.replace(cur, requests=(changed, *cur.requests[1:]))
    result = _compare(cur, base)
    assert _metric(result, "AL").status == judge.UNCHANGED


def test_family_size_makes_the_bar_stricter() -> None:
    """A weak effect that passes alone is not significant among very many compared cases."""
    base, cur = _record(n=8), _record(n=8, accept=0.56)
    alone, among_many = _compare(cur, base, family_size=1), _compare(cur, base, family_size=10**9)
    assert _metric(alone, "AL").p_adj < _metric(among_many, "AL").p_adj
    assert _metric(among_many, "AL").status == judge.UNCHANGED


def test_speed_needs_enough_rounds() -> None:
    result = _compare(_record(rounds=3), _record(rounds=3))
    speed = [m for m in result.metrics if m.kind == "speed"]
    assert speed and all(m.status == judge.NOT_COMPARABLE and m.note.startswith("only 3 rounds") for m in speed)


def test_speed_drop_regresses_and_noise_does_not() -> None:
    base = _record(rounds=8, tps=100.0, seed=1)
    assert _metric(_compare(_record(rounds=8, tps=70.0, seed=2), base), "output TPS").status == judge.REGRESSED
    assert _metric(_compare(_record(rounds=8, tps=101.0, seed=3), base), "output TPS").status == judge.UNCHANGED


def test_other_hardware_makes_speed_not_comparable_unless_forced() -> None:
    base, cur = _record(rounds=8, tps=100.0, seed=1), _record(rounds=8, tps=70.0, seed=2)
    other = {"cpu_model": "x", "gpus": ["NVIDIA H100"]}
    blocked = _metric(_compare(cur, base, hw=other), "output TPS")
    assert blocked.status == judge.NOT_COMPARABLE and "gpus [] -> ['NVIDIA H100']" in blocked.note
    assert _metric(_compare(cur, base, hw=other, force=True), "output TPS").status == judge.REGRESSED


def test_engine_version_change_is_compared_and_shown() -> None:
    result = _compare(_record(engine_version="2"), _record())
    assert result.status == judge.IDENTICAL
    assert "engine fake 1 (baseline) -> fake 2 (current)" in result.notes


def test_other_workload_is_not_comparable() -> None:
    result = _compare(_record(max_tokens=128), _record())
    assert result.status == judge.NOT_COMPARABLE and any("max_tokens 64 -> 128" in n for n in result.notes)


def test_too_few_paired_requests_is_not_comparable() -> None:
    result = _compare(_record(n=3, accept=0.3), _record(n=3))
    assert _metric(result, "AL").status == judge.NOT_COMPARABLE


def test_comparison_is_plain_json() -> None:
    data = _compare(_record(accept=0.45), _record()).to_dict()
    assert all(v is None or not isinstance(v, float) or math.isfinite(v) for m in data["metrics"] for v in m.values())


def test_drafter_method_matching() -> None:
    assert match_key("test_q[vllm-ngram_k3_min3-coding]", "ngram_k3_min3", "drafter-method") == "test_q[vllm-ngram*-coding]"
    assert match_key("test_q[vllm-ngram_k3-coding]", "ngram_k3", "drafter-method") == "test_q[vllm-ngram*-coding]"
    assert match_key("test_q[vllm-ngram_k3-coding]", "ngram_k3", "id") == "test_q[vllm-ngram_k3-coding]"
    assert match_key("test_q[vllm-none]", "none", "drafter-method") == "test_q[vllm-none*]"
    index = index_by_key([_record("t[e-ngram_k3-a]", k=3), _record("t[e-ngram_k5-a]", k=5)], "drafter-method")
    assert len(index["t[e-ngram*-a]"]) == 2  # ambiguous: the plugin says so instead of guessing


def _with_cost(record: Record, cpu_s_per_token: float | None, seed: int) -> Record:
    """The record with a cost section whose rounds spent about ``cpu_s_per_token`` CPU seconds per output token."""
    if cpu_s_per_token is None:
        return record
    rng = random.Random(seed)
    per_round = [cpu_s_per_token * rng.uniform(0.99, 1.01) for _ in range(record.case.rounds)]
    return record.with_sections({"cost": {"cpu_s_per_output_token": sum(per_round) / len(per_round),
                                          "per_round": {"cpu_s_per_output_token": per_round}}})


def _cost_compare(cur_cost: float | None, base_cost: float | None, *, cost: bool) -> judge.CaseComparison:
    cur = _with_cost(_record(rounds=8, tps=100.0, seed=1), cur_cost, seed=2)
    base = _with_cost(_record(rounds=8, tps=100.0, seed=1), base_cost, seed=3)
    return judge.compare_case(cur, base, baseline_path="b.json", thresholds=Thresholds(resamples=1000, cost=cost),
                              family_size=1, current_hardware={"cpu_model": "x", "gpus": []},
                              baseline_hardware={"cpu_model": "x", "gpus": []})


def test_the_cost_per_token_is_judged_only_when_opted_in() -> None:
    """--speedbench-compare-cost: a clearly dearer token fails the case; off (the default), the same
    figures are not judged and the case passes."""
    opted = _cost_compare(0.0015, 0.001, cost=True)
    cost = _metric(opted, judge.COST_METRIC.name)
    assert opted.status == judge.REGRESSED and cost.status == judge.REGRESSED
    assert cost.baseline is not None and cost.current is not None and cost.current > cost.baseline
    assert "ms/tok" in judge.describe_metric(opted.to_dict()["metrics"][-1], opted.confidence)
    assert _metric(_cost_compare(0.001, 0.001, cost=True), judge.COST_METRIC.name).status == judge.UNCHANGED
    plain = _cost_compare(0.0015, 0.001, cost=False)
    assert plain.status != judge.REGRESSED
    assert judge.COST_METRIC.name not in {m.metric for m in plain.metrics}


def test_a_side_without_a_cost_figure_is_not_judged_never_a_regression() -> None:
    for cur, base, side in ((None, 0.001, "current"), (0.0015, None, "baseline")):
        comparison = _cost_compare(cur, base, cost=True)
        cost = _metric(comparison, judge.COST_METRIC.name)
        assert comparison.status != judge.REGRESSED and cost.status == judge.NOT_COMPARABLE
        assert cost.note == f"{judge.NO_COST_FIGURE} in the {side} run"
        assert f"speed: {judge.NO_COST_FIGURE} in the {side} run" in judge.not_judged_reasons(comparison.to_dict())


def test_the_cost_option_and_its_ini_key_turn_cost_judging_on(pytester: pytest.Pytester) -> None:
    from speedbench_plugin.compare.settings import CompareSettings

    assert not CompareSettings.from_config(pytester.parseconfig()).thresholds.cost
    assert CompareSettings.from_config(pytester.parseconfig("--speedbench-compare-cost")).thresholds.cost
    pytester.makeini("[pytest]\nspeedbench_compare_cost = true\n")
    assert CompareSettings.from_config(pytester.parseconfig()).thresholds.cost
