"""The throughput analysis on synthetic inputs with known answers: SmartSpec's fit and goodput,
SSSD's knee, the dynamic-table builder, step reconstruction from streams, speedups and proxies."""
from __future__ import annotations

import itertools
import math
import random
from typing import Any

import numpy as np
import pytest
from recordkit import make_record, with_speedups

from speedbench_plugin.engines.base import Chunk, SpecCounts, StreamResult
from speedbench_plugin.record import Record
from speedbench_plugin.throughput import analysis, goodput, sssd
from speedbench_plugin.throughput.dynamic import (
    DynamicTableError,
    build_table,
    k_for_batch_size,
    validate_table,
)
from speedbench_plugin.throughput.steps import decode_goodput, reconstruct_steps

# --- SmartSpec ----------------------------------------------------------------------------------


def test_step_time_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    batched = rng.integers(1, 64, 200).astype(float)
    context = rng.integers(500, 9000, 200).astype(float)
    step = 2e-3 * batched + 5e-6 * context + 0.01 + rng.normal(0, 1e-5, 200)
    model = goodput.fit_step_time(batched, context, step)
    assert model.per_batched_token == pytest.approx(2e-3, rel=0.01)
    assert model.per_context_token == pytest.approx(5e-6, rel=0.02)
    assert model.fixed == pytest.approx(0.01, rel=0.02)
    assert model.r2 > 0.999 and model.samples == 200


def test_step_time_fit_needs_enough_steps() -> None:
    with pytest.raises(goodput.FitError, match="at least 4"):
        goodput.fit_step_time([1, 2, 3], [1, 2, 3], [0.1, 0.2, 0.3])


def _toy_prediction() -> goodput.pd.DataFrame:
    # t = 10 ms per batched token + 50 ms; AL(k) = 1, 1.8, 2.4, 2.8, 3.0 for k = 0..4.
    model = goodput.StepTimeModel(0.01, 0.0, 0.05, 1.0, 10)
    return goodput.predict_goodput(model, [0.8, 0.6, 0.4, 0.2], [1, 2, 3, 4], [1, 8, 16, 64], context_per_request=1000)


def test_predicted_goodput_matches_hand_computation() -> None:
    table = _toy_prediction().set_index(["concurrency", "k"])
    # c = 1, k = 3: 2.8 tokens per (0.01 · 4 + 0.05) s
    assert table.loc[(1, 3), "goodput"] == pytest.approx(2.8 / 0.09)
    assert table.loc[(64, 0), "goodput"] == pytest.approx(64 / 0.69)
    assert table.loc[(8, 2), "acceptance_length"] == pytest.approx(2.4)


def test_best_k_falls_with_concurrency_and_tie_bonus_prefers_no_sd() -> None:
    table = _toy_prediction()
    # c=1: k3 31.1 > k2 30.0 = k4; c=8: k1 68.6 > k2 66.2 > k0 61.5; c=16: k1 77.8 > k0 76.2; c=64: k0 wins.
    assert goodput.best_k(table) == {1: 3, 8: 1, 16: 1, 64: 0}
    # SmartSpec's 1.1 bonus on k = 0 flips the near-tie at c = 16 (76.2 · 1.1 > 77.8) but not c = 8.
    assert goodput.best_k(table, no_spec_bonus=goodput.NO_SPEC_TIE_BONUS) == {1: 3, 8: 1, 16: 0, 64: 0}


def test_drafting_share_scales_verified_tokens() -> None:
    model = goodput.StepTimeModel(0.01, 0.0, 0.05, 1.0, 10)
    half = goodput.predict_goodput(model, [0.5], [1], [2], 100, drafting_share=0.5).set_index("k")
    assert half.loc[1, "batched_tokens"] == pytest.approx(2 * 1.5)


def test_predict_rejects_non_positive_concurrency() -> None:
    model = goodput.StepTimeModel(0.01, 0.0, 0.05, 1.0, 10)
    with pytest.raises(ValueError, match="concurrency must be a positive integer"):
        goodput.predict_goodput(model, [0.5], [1], [0], 100)


# --- SSSD ---------------------------------------------------------------------------------------


def test_knee_found_where_step_time_starts_to_grow() -> None:
    sizes = np.array([1, 8, 16, 32, 64, 128, 192, 256, 384, 512, 768, 1024], dtype=float)
    rng = np.random.default_rng(1)
    times = 0.02 + 1e-4 * np.maximum(0, sizes - 128) + rng.normal(0, 2e-5, len(sizes))
    knee = sssd.find_knee(sizes, times)
    assert knee.tokens == 128
    assert knee.slope_s_per_token == pytest.approx(1e-4, rel=0.05)
    assert knee.flat_s == pytest.approx(0.02, rel=0.01)


def test_knee_rejects_shrinking_step_times() -> None:
    with pytest.raises(ValueError, match="does not grow"):
        sssd.find_knee([1, 2, 4, 8], [0.4, 0.3, 0.2, 0.1])


def test_sssd_rule_divides_the_knee_by_concurrency_and_caps() -> None:
    assert sssd.sssd_table(64, [1, 16, 32, 64, 128], max_k=4) == {1: 4, 16: 4, 32: 2, 64: 1, 128: 0}
    with pytest.raises(ValueError, match="concurrency must be a positive integer"):
        sssd.sssd_draft_length(64, 0, 4)


# --- the vLLM dynamic table ---------------------------------------------------------------------


def test_dynamic_table_merges_equal_k_and_fills_between_levels() -> None:
    assert build_table({1: 4, 2: 3, 4: 3, 8: 1}) == [(1, 1, 4), (2, 4, 3), (5, 8, 1)]
    assert build_table({8: 0, 1: 2}) == [(1, 1, 2), (2, 8, 0)]


@pytest.mark.parametrize("seed", range(20))
def test_dynamic_table_is_contiguous_inclusive_and_reproduces_best_k(seed: int) -> None:
    rng = random.Random(seed)
    levels = sorted(rng.sample(range(1, 600), rng.randint(1, 9)))
    best = {c: rng.randint(0, 4) for c in levels}
    table = build_table(best)
    assert table[0][0] == 1 and table[-1][1] == levels[-1]
    for (s1, e1, k1), (s2, _, k2) in itertools.pairwise(table):
        assert s1 <= e1 and s2 == e1 + 1 and k1 != k2  # inclusive, contiguous, no overlap, merged
    for c, k in best.items():
        assert k_for_batch_size(table, c) == k


def test_dynamic_table_passes_vllms_own_validation() -> None:
    utils = pytest.importorskip("vllm.v1.spec_decode.dynamic.utils")
    table = build_table({1: 4, 2: 3, 4: 2, 8: 1, 16: 0})
    assert utils.validate_and_normalize_dynamic_sd_schedule([list(e) for e in table]) == table
    dense = utils.build_dynamic_sd_schedule_lookup([list(e) for e in table], vllm_max_batch_size=32, vllm_num_speculative_tokens=4)
    assert [dense[c] for c in (1, 2, 3, 4, 8, 9, 16, 32)] == [4, 3, 2, 2, 1, 0, 0, 0]


@pytest.mark.parametrize("bad, message", [
    ([], "empty"), ([(2, 4, 1)], "does not continue from batch size 0"),
    ([(1, 4, 1), (4, 8, 2)], "does not continue"), ([(1, 4, 1), (6, 8, 2)], "does not continue"),
    ([(1, 0, 1)], "start <= end"), ([(1, 2, -1)], "k >= 0"),
])
def test_dynamic_table_validation_rejects(bad: list, message: str) -> None:
    with pytest.raises(DynamicTableError, match=message):
        validate_table(bad)


@pytest.mark.parametrize("best, message", [({}, "no best draft length"), ({0: 1}, "not a positive integer"),
                                           ({1: -1}, "not a non-negative integer")])
def test_dynamic_table_builder_rejects_bad_input(best: dict, message: str) -> None:
    with pytest.raises(DynamicTableError, match=message):
        build_table(best)


# --- steps from streams -------------------------------------------------------------------------


def _stream(rid: str, prompt: int, times: list[float], sizes: list[int], submit: float = 0.0,
            spec: SpecCounts | None = None) -> StreamResult:
    return StreamResult(rid, prompt, submit, [Chunk(t, tuple(range(n))) for t, n in zip(times, sizes)], "length", spec)


def test_steps_reconstructed_from_chunk_times() -> None:
    # Three requests share engine steps every 50 ms (±1 ms delivery jitter); the third stops early.
    jitter = random.Random(0)
    step_times = [0.2 + 0.05 * i for i in range(10)]
    streams = [
        _stream("a", 100, [t + jitter.uniform(0, 1e-3) for t in step_times], [1] + [2] * 9),
        _stream("b", 300, [t + jitter.uniform(0, 1e-3) for t in step_times], [1] + [2] * 9),
        _stream("c", 200, [t + jitter.uniform(0, 1e-3) for t in step_times[:6]], [1] + [2] * 5),
    ]
    steps, info = reconstruct_steps(streams, k=3)
    assert info["split_clusters"] == 0
    assert len(steps) == 9 and steps["pure_decode"].all()
    assert steps["step_s"].to_numpy() == pytest.approx(0.05, abs=1.5e-3)
    assert list(steps["requests"]) == [3] * 5 + [2] * 4
    # No counters: every request verifies 1 + k tokens per decode step.
    assert steps["batched_tokens"].iloc[0] == 3 * 4 and steps["batched_tokens"].iloc[-1] == 2 * 4
    # Context before the first decode chunk: prompts + the one token each has.
    assert steps["context_tokens"].iloc[0] == 101 + 301 + 201
    assert decode_goodput(steps) == pytest.approx((5 * 6 + 4 * 4) / steps["step_s"].sum())


def test_steps_use_engine_drafted_counts_and_exclude_prefill_and_merges() -> None:
    times = [0.1, 0.15, 0.2, 0.25, 0.3]
    a = _stream("a", 50, times, [1, 1, 1, 1, 1], spec=SpecCounts(2, 4, 0, [0, 0], "test"))  # 4 drafted over 4 steps
    late = _stream("b", 50, [0.2, 0.3], [1, 2], submit=0.12)  # waiting at 0.15; its chunk at 0.25 merged into 0.3
    steps, _ = reconstruct_steps([a, late], k=2)
    by_t = steps.set_index(steps["t"].round(3))
    assert not by_t.loc[0.15, "pure_decode"]  # b was in the engine, still waiting for its first token
    assert not by_t.loc[0.2, "pure_decode"]  # b's prefill in this step
    assert not by_t.loc[0.25, "pure_decode"]  # b is running but absent: a merged chunk
    assert by_t.loc[0.3, "pure_decode"]
    assert by_t.loc[0.3, "batched_tokens"] == pytest.approx((1 + 1.0) + (1 + 2.0))


# --- records → tables ---------------------------------------------------------------------------


def _record(drafter: str, tier: str, conc: int, tps: float, user: float, step: float, al: float, **kw: Any) -> Record:
    return make_record(drafter, tier=tier, concurrency=conc, output_tps=tps, user_tps=user, step_latency=step, al=al,
                       tp=2, **kw)


def test_speedup_and_proxy_against_none_at_the_same_concurrency() -> None:
    records = with_speedups([
        _record("none", "mixed", 1, 20.0, 20.0, 0.05, 1.0), _record("ngram:k=3", "mixed", 1, 30.0, 28.0, 0.06, 1.5),
        _record("none", "mixed", 2, 40.0, 19.0, 0.05, 1.0),
    ])
    frame = analysis.cases_frame(records).set_index("case_id")
    sd = frame.loc["ngram_k3-1024-mixed-1"]
    assert sd["speedup_output_tps"] == pytest.approx(1.5) and sd["speedup_user_tps"] == pytest.approx(1.4)
    assert sd["proxy_speedup"] == pytest.approx(0.05 * 1.5 / 0.06)
    assert sd["output_tps_per_gpu"] == 15.0
    assert math.isnan(frame.loc["none-1024-mixed-2", "speedup_output_tps"])


def test_random_inputs_overstatement_per_sd_setting() -> None:
    records = [_record("none", t, 1, v, 1, 1, 1) for t, v in (("random", 22.0), ("low_entropy", 20.0), ("mixed", 20.0))]
    records += [_record("ngram:k=3", t, 1, v, 1, 1, 1) for t, v in (("random", 18.0), ("low_entropy", 30.0), ("mixed", 10.0))]
    table = analysis.random_vs_real(analysis.cases_frame(records)).set_index("sd")
    assert table.loc[False, "overstatement_vs_real_mean"] == pytest.approx(0.10)
    assert table.loc[True, "overstatement_vs_low_entropy"] == pytest.approx(18 / 30 - 1)
    assert table.loc[True, "overstatement_vs_real_mean"] == pytest.approx(18 / 20 - 1)


def test_draft_length_analysis_builds_best_k_and_dynamic_table() -> None:
    tps = {(1, 0): 10, (1, 1): 14, (1, 2): 15, (4, 0): 30, (4, 1): 33, (4, 2): 31, (8, 0): 50, (8, 1): 45, (8, 2): 40}
    records = [_record("none" if k == 0 else f"ngram:k={k}", "mixed", c, float(v), 1, 1, 1,
                       histogram=[5, 3, 2][: k + 1] if k else [10])
               for (c, k), v in tps.items()]
    profile = [{"batched_tokens": x, "step_s": 0.02 + 1e-4 * max(0, x - 8)} for x in (1, 4, 8, 16, 64, 256)]
    (item,) = analysis.draft_length_analyses(records, profile)
    assert item.best_k_measured == {1: 2, 4: 1, 8: 0}
    assert item.dynamic_table == [(1, 1, 2), (2, 4, 1), (5, 8, 0)]
    assert item.per_position == pytest.approx([0.5, 0.2])
    assert item.knee is not None and item.knee.tokens == 8
    assert item.best_k_sssd == {1: 2, 4: 2, 8: 1}
    assert any("SmartSpec fit" in note for note in item.notes)  # no decode steps attached: no fit, said so
    assert item.drafter is not None and item.drafter.method == "ngram"


def test_family_is_the_drafter_without_its_draft_length() -> None:
    from speedbench_plugin.drafters import DrafterSpec

    assert analysis.family_of(DrafterSpec.parse("ngram:k=3,min=2")) == "ngram_min2"
    assert analysis.family_of(DrafterSpec.parse("ngram:k=5,min=2")) == "ngram_min2"
    assert analysis.family_of(DrafterSpec.parse("none")) == "none"
