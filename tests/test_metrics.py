"""Metric definitions against hand-computed steps."""
from __future__ import annotations

import math

import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.engines.base import Chunk, SpecCounts, StreamResult


def stream(sizes: list[int], times: list[float] | None = None, t_submit: float = 0.0, **kw) -> StreamResult:
    times = times or [1.0 + i for i in range(len(sizes))]
    chunks = [Chunk(t, tuple(range(n))) for t, n in zip(times, sizes)]
    return StreamResult("r", 10, t_submit, chunks, **kw)


def test_first_chunk_is_prefill_not_a_step() -> None:
    assert m.decode_step_lengths(stream([1, 4, 1, 2])) == [4, 1, 2]


def test_pooled_acceptance_length_weights_steps_not_requests() -> None:
    a, b = stream([1, 4, 4]), stream([1, 1, 1, 1, 1])  # AL 4.0 over 2 steps, 1.0 over 4 steps
    steps = m.StreamSteps.pool([a, b], k=3)
    assert steps.steps == 6 and steps.decode_tokens == 12
    assert m.acceptance_length(steps) == pytest.approx(2.0)
    assert m.acceptance_length_request_mean([a, b]) == pytest.approx(2.5)


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
    assert 1 + sum(pp) == pytest.approx(sum(lengths) / len(lengths))


def test_counter_metrics_follow_vllm_conventions() -> None:
    # 10 drafting steps of k=3: accepted per position 6, 3, 1 -> 10 accepted of 30 drafted.
    counts = SpecCounts(num_drafts=10, num_draft_tokens=30, num_accepted_tokens=10, accepted_per_pos=[6, 3, 1], source="t")
    assert m.acceptance_rate(counts) == pytest.approx(1 / 3)
    assert m.acceptance_length_drafting_steps(counts) == pytest.approx(2.0)
    assert m.per_position_from_counts(counts, 3) == pytest.approx([0.6, 0.3, 0.1])
    # On 20 stream steps (10 of which drafted nothing) the same counts give half the rate.
    assert m.per_position_from_counts(counts, 3, steps=20) == pytest.approx([0.3, 0.15, 0.05])
    summary = m.counters_summary(counts, 3)
    assert summary["conditional_acceptance_rates"] == pytest.approx([0.6, 0.5, 1 / 3])


def test_drafted_fewer_than_k_lowers_acceptance_rate_not_length() -> None:
    # Two steps: one drafted 3 and accepted 2; one drafted 1 (short ngram match) and accepted 1.
    counts = SpecCounts(2, 4, 3, [2, 1, 0], "t")
    assert m.acceptance_rate(counts) == pytest.approx(0.75)
    assert m.acceptance_length_drafting_steps(counts) == pytest.approx(2.5)


def test_fidelity_flags_merged_chunks() -> None:
    exact = stream([1, 2, 2, 1])  # 3 steps, 2 accepted
    counts = SpecCounts(3, 9, 2, [2, 0, 0], "t")
    fid = m.fidelity(m.StreamSteps.pool([exact], 3), counts)
    assert fid["abs_diff"] == pytest.approx(0) and fid["rel_diff"] == pytest.approx(0)
    merged = stream([1, 4, 1])  # the engine's steps 1 and 2 arrived as one chunk
    fid = m.fidelity(m.StreamSteps.pool([merged], 3), counts)
    assert fid["accepted_tokens_stream"] == 3 and fid["rel_diff"] > 0.2


def test_accepted_cut_at_end_needs_the_per_step_record() -> None:
    # Engine accepted 3 in the final step but max_tokens left room for 2 tokens only.
    counts = SpecCounts(2, 6, 4, [2, 1, 1], "vllm:per_request")
    cut = stream([1, 2, 2], finish_reason="length", spec=counts, spec_raw={"per_step_accepted": [1, 3]})
    assert m.accepted_cut_at_end(cut) == 2
    assert m.accepted_cut_at_end(stream([1, 2, 2], spec=counts)) is None
    # A gap the end cut does not explain stays visible.
    odd = stream([1, 2, 2], spec=SpecCounts(2, 6, 5, [2, 2, 1], "x"), spec_raw={"per_step_accepted": [1, 3]})
    assert m.accepted_cut_at_end(odd) == 0


def test_timing_metrics() -> None:
    s = stream([1, 2, 1, 2], times=[0.5, 1.0, 1.25, 1.5], t_submit=0.25)
    assert m.ttft(s) == pytest.approx(0.25)
    assert m.user_tps(s) == pytest.approx(5 / 1.0)
    assert m.tpot(s) == pytest.approx(0.2)
    assert m.step_latencies(s) == pytest.approx([0.5, 0.25, 0.25])
    other = stream([1, 1], times=[2.0, 3.0], t_submit=0.0)
    assert m.output_tps([s, other]) == pytest.approx(8 / 3.0)


def test_empty_inputs_give_nan_not_errors() -> None:
    assert math.isnan(m.acceptance_length(m.StreamSteps.pool([], 3)))
    assert math.isnan(m.user_tps(stream([1])))
    assert math.isnan(m.acceptance_rate(SpecCounts(0, 0, 0, [], "t")))
    assert math.isnan(m.percentile([], 50))
