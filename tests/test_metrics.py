"""Metric definitions against hand-computed steps."""
from __future__ import annotations

import math

import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.engines.base import Chunk, SpecCounts, StepRecord, StreamResult


def stream(sizes: list[int], times: list[float] | None = None, t_submit: float = 0.0, **kw) -> StreamResult:
    times = times or [1.0 + i for i in range(len(sizes))]
    chunks = [Chunk(t, tuple(range(n))) for t, n in zip(times, sizes)]
    return StreamResult("r", 10, t_submit, chunks, **kw)


def test_first_chunk_is_prefill_not_a_step() -> None:
    assert m.decode_step_lengths(stream([1, 4, 1, 2])) == [4, 1, 2]


def test_a_first_chunk_with_decode_tokens_is_a_merge() -> None:
    merged = stream([3, 1, 1])  # the prefill's token arrived with two decode tokens
    assert m.decode_step_lengths(merged) == [2, 1, 1]
    assert m.merged_chunks(merged, k=0) == 1
    assert m.merged_chunks(merged, k=3) == 1
    assert m.merged_chunks(stream([3, 2, 1]), k=0) == 2


def test_merges_are_chunks_longer_than_one_step() -> None:
    assert m.merged_chunks(stream([1, 4, 5, 9]), k=3) == 2
    assert m.merged_chunks(stream([1, 1, 2, 1]), k=0) == 1  # no drafter: any chunk of more than one token
    assert not m.is_merged(4, 3) and m.is_merged(5, 3)


def test_pooled_acceptance_length_weights_steps_not_requests() -> None:
    a, b = stream([1, 4, 4]), stream([1, 1, 1, 1, 1])  # AL 4.0 over 2 steps, 1.0 over 4 steps
    steps = m.StreamSteps.pool([a, b], k=3)
    assert steps.steps == 6 and steps.decode_tokens == 12 and steps.merged_chunks == 0
    assert m.acceptance_length_of(steps) == pytest.approx(2.0)
    assert m.acceptance_length_stream_request_mean([a, b]) == pytest.approx(2.5)


def test_histogram_counts_steps_that_drafted_nothing_or_fewer_than_k() -> None:
    # k = 3; steps emitting 1 (no draft or all rejected), 2, 3 and 4 tokens.
    lengths = [1, 1, 2, 3, 4, 4]
    hist = m.step_length_histogram(lengths, k=3)
    assert hist == [2, 1, 1, 2]
    pp = m.per_position_from_histogram(hist)
    assert pp == pytest.approx([4 / 6, 3 / 6, 2 / 6])
    car = m.conditional_acceptance(pp)
    assert car == pytest.approx([4 / 6, 3 / 4, 2 / 3])
    # AL = 1 + sum(pp), the identity SPEED-Bench uses.
    assert 1 + sum(pp) == pytest.approx(m.histogram_tokens(hist) / m.histogram_steps(hist))


def test_engine_histogram_adds_the_steps_that_drafted_nothing() -> None:
    # 9 output tokens: prefill 1, drafting steps accepting 2 and 0 (3 + 1 tokens), then 4 steps without a draft.
    record = StepRecord(accepted=(2, 0), drafted=(3, 3), source="t")
    s = stream([1, 3, 1, 1, 1, 1, 1], spec=SpecCounts(2, 6, 2, [1, 1, 0], "t"), steps=record)
    assert m.engine_step_histogram(s, 3) == [5, 0, 1, 0]
    assert m.engine_step_histogram(stream([1, 2]), 3) is None


def test_engine_histogram_counts_drafts_cut_at_the_end() -> None:
    # The last step accepted 3 but max_tokens left room for 2 tokens: the engine's step still had 4.
    s = stream([1, 2, 2], finish_reason="length", spec=SpecCounts(2, 6, 4, [2, 1, 1], "t"),
               steps=StepRecord((1, 3), (3, 3), "t"))
    assert m.accepted_cut_at_end(s) == 2
    assert m.engine_step_histogram(s, 3) == [0, 1, 0, 1]


def test_counter_metrics_follow_vllm_conventions() -> None:
    # 10 drafting steps of k=3: accepted per position 6, 3, 1 -> 10 accepted of 30 drafted.
    counts = SpecCounts(num_drafts=10, num_draft_tokens=30, num_accepted_tokens=10, accepted_per_pos=[6, 3, 1], source="t")
    assert m.acceptance_rate(counts) == pytest.approx(1 / 3)
    assert m.acceptance_length_drafting_steps(counts) == pytest.approx(2.0)
    assert m.per_position_from_counts(counts, 3) == pytest.approx([0.6, 0.3, 0.1])
    # On 20 stream steps (10 of which drafted nothing) the same counts give half the rate.
    assert m.per_position_from_counts(counts, 3, steps=20) == pytest.approx([0.3, 0.15, 0.05])


def test_drafted_fewer_than_k_lowers_acceptance_rate_not_length() -> None:
    # Two steps: one drafted 3 and accepted 2; one drafted 1 (short ngram match) and accepted 1.
    counts = SpecCounts(2, 4, 3, [2, 1, 0], "t")
    assert m.acceptance_rate(counts) == pytest.approx(0.75)
    assert m.acceptance_length_drafting_steps(counts) == pytest.approx(2.5)


def test_fidelity_verdicts() -> None:
    counts = SpecCounts(3, 9, 2, [2, 0, 0], "t")
    exact = m.fidelity(m.StreamSteps.pool([stream([1, 2, 2, 1])], 3), counts, cut_at_end=None, bound=3)
    assert exact.verdict == m.EXACT and exact.abs_diff == pytest.approx(0) and exact.gap == 0
    # The engine's steps 1 and 2 arrived as one chunk of 5 tokens: the stream shows more accepted.
    merged = m.fidelity(m.StreamSteps.pool([stream([1, 5, 1])], 3), counts, cut_at_end=None, bound=3)
    assert merged.verdict == m.MERGED_STEPS and merged.gap < 0 and merged.rel_diff > 0.2
    # Two drafts accepted but cut by max_tokens: within a bound of 3, unexplained beyond a bound of 1.
    cut = SpecCounts(2, 6, 4, [2, 1, 1], "t")
    steps = m.StreamSteps.pool([stream([1, 2, 2])], 3)
    assert m.fidelity(steps, cut, cut_at_end=None, bound=3).verdict == m.WITHIN_END_CUT_BOUND
    assert m.fidelity(steps, cut, cut_at_end=None, bound=1).verdict == m.UNEXPLAINED
    # With the per-step record the cut is counted exactly; a gap beyond it stays visible.
    assert m.fidelity(steps, cut, cut_at_end=2, bound=3).verdict == m.EXACT
    assert m.fidelity(steps, cut, cut_at_end=1, bound=3).verdict == m.UNEXPLAINED


def test_end_cut_bound_counts_requests_that_ended_inside_a_step() -> None:
    ended = [stream([1, 2], finish_reason="length"), stream([1, 2], finish_reason="stop"), stream([1], finish_reason="abort")]
    assert m.end_cut_bound(ended, 3) == 6


def test_accepted_cut_at_end_needs_the_per_step_record() -> None:
    counts = SpecCounts(2, 6, 4, [2, 1, 1], "vllm:per_request")
    assert m.accepted_cut_at_end(stream([1, 2, 2], spec=counts)) is None
    # A gap the end cut does not explain stays visible.
    odd = stream([1, 2, 2], spec=SpecCounts(2, 6, 5, [2, 2, 1], "x"), steps=StepRecord((1, 3), (3, 3), "x"))
    assert m.accepted_cut_at_end(odd) == 0


def test_a_coalesced_stream_gives_step_latency_per_engine_step_not_per_chunk() -> None:
    """Two chunks of 8 tokens after the first, from 6 engine steps (4 drafting, 2 not): each step
    took the decode time over 6, counted 6 times; a per-step stream keeps its chunk intervals."""
    record = StepRecord(accepted=(3, 3, 2, 2), drafted=(3, 3, 3, 3), source="vllm:per_request")
    coalesced = stream([1, 8, 8], times=[0.1, 1.0, 1.3], steps=record)
    # 16 decode tokens: the drafting steps emitted 4 + 4 + 3 + 3 = 14, two steps drafted nothing.
    assert m.step_latencies(coalesced, 3) == pytest.approx([1.2 / 6] * 6)
    per_step = stream([1, 4, 4, 3, 3, 1, 1], times=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], steps=record)
    assert m.step_latencies(per_step, 3) == pytest.approx([0.1] * 6)
    assert m.step_latencies(stream([1, 8, 8], times=[0.1, 1.0, 1.3]), 3) == pytest.approx([0.9, 0.3])


def test_timing_metrics() -> None:
    s = stream([1, 2, 1, 2], times=[0.5, 1.0, 1.25, 1.5], t_submit=0.25)
    assert m.ttft(s) == pytest.approx(0.25)
    assert m.user_tps(s) == pytest.approx(5 / 1.0)
    assert m.tpot(s) == pytest.approx(0.2)
    assert m.step_latencies(s, 3) == pytest.approx([0.5, 0.25, 0.25])
    other = stream([1, 1], times=[2.0, 3.0], t_submit=0.0)
    assert m.output_tps([s, other]) == pytest.approx(8 / 3.0)


def test_reference_ratios() -> None:
    assert m.speedup(30.0, 20.0) == pytest.approx(1.5)
    assert m.proxy_speedup(0.010, 2.0, 0.012) == pytest.approx(0.010 * 2.0 / 0.012)
    assert m.harness_efficiency(430.0, 1000.0) == pytest.approx(0.43)
    assert m.client_cpu_us_per_output(0.5, 10_000) == pytest.approx(50.0)


def test_empty_inputs_give_nan_not_errors() -> None:
    assert math.isnan(m.acceptance_length_of(m.StreamSteps.pool([], 3)))
    assert math.isnan(m.user_tps(stream([1])))
    assert math.isnan(m.acceptance_rate(SpecCounts(0, 0, 0, [], "t")))
    assert math.isnan(m.percentile([], 50))
    assert math.isnan(m.speedup(None, 3.0)) and math.isnan(m.harness_efficiency(3.0, None))


def test_fewest_steps_splits_merged_chunks() -> None:
    assert m.fewest_steps(stream([1, 1, 1, 1]), 0) == 3
    assert m.fewest_steps(stream([1, 16]), 0) == 16  # no drafter: one token per step
    assert m.fewest_steps(stream([1, 4, 9]), 3) == 1 + 3
