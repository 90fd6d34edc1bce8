"""Each tool's acceptance length, pinned against streams computed by hand (README "AL conventions").

Four requests, k = 3, end-of-sequence token 99, built into a real record:

==  ==========  ======  ==========  ===================  =================================
id  chunks      finish  EOS         engine steps          what it covers
==  ==========  ======  ==========  ===================  =================================
A   1, 4, 3     stop    in last     accepted 3, 2 of 3    prefill chunk; EOS in a merged chunk
B   1, 3, 2, 1  stop    alone       accepted 2, 1, 0      an EOS-only final chunk
C   1, 4, 2     length  no          accepted 3, 3 of 3    max_tokens cut 2 accepted drafts
D   1, 1, 1, 1  length  no          none drafted          no drafting step
==  ==========  ======  ==========  ===================  =================================
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
from recordkit import make_record

from speedbench_plugin import metrics as m
from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import Chunk, SpecCounts, StepRecord, StreamResult
from speedbench_plugin.record import CaseKey, MeasuredRequest, MeasuredRound, Record, build_record
from speedbench_plugin.reports import _fidelity_cell

EOS = 99


def _stream(name: str, chunks: list[list[int]], finish: str, accepted: tuple[int, ...], drafted: tuple[int, ...]) -> StreamResult:
    spec = SpecCounts(len(drafted), sum(drafted), sum(accepted), [sum(1 for a in accepted if a > i) for i in range(3)], "t")
    return StreamResult(name, 5, 0.0, [Chunk(1.0 + i, tuple(ids)) for i, ids in enumerate(chunks)], finish_reason=finish,
                        spec=spec, steps=StepRecord(accepted, drafted, "t"))


def streams() -> list[StreamResult]:
    return [
        _stream("A", [[1], [2, 3, 4, 5], [6, 7, EOS]], "stop", (3, 2), (3, 3)),
        _stream("B", [[1], [2, 3, 4], [5, 6], [EOS]], "stop", (2, 1, 0), (3, 3, 3)),
        _stream("C", [[1], [2, 3, 4, 5], [6, 7]], "length", (3, 3), (3, 3)),
        _stream("D", [[1], [2], [3], [4]], "length", (), ()),
    ]


def record_of(results: list[StreamResult], drafter: str = "ngram:k=3") -> Record:
    spec = DrafterSpec.parse(drafter)
    case = CaseKey("c", "t::c", "qualitative", "fake", "1", "m", "sha", "weights-sha256", spec, 1, 8, 0.0, 1, category="coding")
    requests = tuple(MeasuredRequest(s.request_id, 0, 0, None, s) for s in results)
    return build_record(case, {"engine": "fake"}, [MeasuredRound(requests, 0.0, 1.0, None, None)], eos_token_ids={EOS})


def test_specdec_bench_counts_the_prefill_chunk_and_drops_a_final_eos() -> None:
    # A: 8 tokens - EOS = 7 over 3 chunks; B: 7 - EOS = 6 over 3 chunks (the EOS-only chunk dropped);
    # C: 7 over 3; D: 4 over 4.
    assert m.specdec_bench_request_al([1, 4, 3], eos_at_end=True) == pytest.approx(7 / 3)
    assert m.specdec_bench_request_al([1, 3, 2, 1], eos_at_end=True) == pytest.approx(6 / 3)
    assert m.specdec_bench_request_al([1, 4, 2], eos_at_end=False) == pytest.approx(7 / 3)
    assert m.specdec_bench_request_al([1, 1, 1, 1], eos_at_end=False) == pytest.approx(1.0)
    assert math.isnan(m.specdec_bench_request_al([1], eos_at_end=True))  # only the EOS: no chunk left
    rows = {r.question_id: r for r in record_of(streams()).requests}
    assert [rows[q].eos_at_end for q in "ABCD"] == [True, True, False, False]
    assert [rows[q].acceptance_length_specdec_bench for q in "ABCD"] == pytest.approx([7 / 3, 2.0, 7 / 3, 1.0])


def test_every_convention_of_a_case() -> None:
    acc = record_of(streams()).acceptance
    # SPEED-Bench, from the engine's steps: A 7/2, B 6/3, C (4 + 4)/2 (2 drafts cut by max_tokens count), D 3/3.
    assert acc.histogram_source == "engine:t"
    assert (acc.step_tokens, acc.steps) == (24, 10)
    assert acc.acceptance_length == pytest.approx(2.4)
    assert acc.acceptance_length_stream == pytest.approx(22 / 10)  # delivered tokens only
    assert acc.acceptance_length_stream_request_mean == pytest.approx((7 / 2 + 6 / 3 + 6 / 2 + 3 / 3) / 4)
    assert acc.acceptance_length_specdec_bench == pytest.approx((7 / 3 + 2 + 7 / 3 + 1) / 4)
    # vLLM bench serve: 1 + 14 accepted / 7 drafting steps, pooled.
    assert acc.acceptance_length_vllm_bench == pytest.approx(3.0)
    assert acc.acceptance_length_vllm_bench_source == "t"
    # AIPerf: per request 1 + accepted / drafts = 3.5, 2.0, 4.0 (D never drafted: left out).
    assert acc.requests_without_drafts == 1
    assert acc.acceptance_length_aiperf_request_mean == pytest.approx((3.5 + 2.0 + 4.0) / 3)
    assert acc.acceptance_length_aiperf_token_weighted == pytest.approx((3.5 * 8 + 2.0 * 7 + 4.0 * 7) / 22)
    assert acc.acceptance_rate == pytest.approx(14 / 21)
    assert acc.acceptance_rate_request_mean == pytest.approx((5 / 6 + 3 / 9 + 6 / 6) / 3)


def test_conventions_survive_the_json_round_trip_and_old_records_read() -> None:
    record = record_of(streams())
    data = record.to_json()
    assert Record.from_json(data) == record
    old = dict(data, acceptance={**{k: v for k, v in data["acceptance"].items() if k != "acceptance_length_stream_request_mean"},
                                 "acceptance_length_request_mean": 2.375})
    assert Record.from_json(old).acceptance.acceptance_length_stream_request_mean == 2.375


def test_without_per_request_counters_there_is_no_aiperf_figure() -> None:
    bare = [StreamResult(s.request_id, 5, 0.0, s.chunks, finish_reason=s.finish_reason) for s in streams()]
    acc = record_of(bare).acceptance
    assert acc.acceptance_length_specdec_bench == pytest.approx((7 / 3 + 2 + 7 / 3 + 1) / 4)
    assert acc.acceptance_length_aiperf_request_mean is None and acc.acceptance_length_vllm_bench is None


def test_output_hashes_tell_same_outputs_from_different_ones() -> None:
    first, again = record_of(streams()), record_of(streams())
    assert [r.output_sha256 for r in first.requests] == [r.output_sha256 for r in again.requests]
    assert first.outputs_sha256 == again.outputs_sha256 is not None
    changed = streams()
    changed[2].chunks[-1] = Chunk(3.0, (6, 8))  # C's last token differs
    other = record_of(changed)
    differ = [a.question_id for a, b in zip(first.requests, other.requests) if a.output_sha256 != b.output_sha256]
    assert differ == ["C"]
    assert other.outputs_sha256 != first.outputs_sha256
    # Same tokens in other chunks: the same output (the hash is over tokens, not their timing or chunking).
    rechunked = streams()
    rechunked[0].chunks = [Chunk(1.0, (1, 2, 3, 4, 5)), Chunk(2.0, (6, 7, EOS))]
    assert record_of(rechunked).outputs_sha256 == first.outputs_sha256
    assert m.output_sha256([1, 2]) != m.output_sha256([2, 1])


def test_the_table_shows_the_chosen_convention() -> None:
    from speedbench_plugin.reports import render_table

    record = record_of(streams())
    headline = render_table([record])
    assert " AL " in headline and "2.40" in headline
    specdec = render_table([record], width=300, al_convention="specdec-bench")
    assert "AL (specdec-bench)" in specdec and f"{(7 / 3 + 2 + 7 / 3 + 1) / 4:.2f}" in specdec
    assert f"specdec_bench overall AL (mean over all requests): ngram_k3 {(7 / 3 + 2 + 7 / 3 + 1) / 4:.4f}" in specdec
    assert "AL (aiperf)" in render_table([record], width=300, al_convention="aiperf")


def test_the_cross_engine_check_tells_same_outputs_from_different() -> None:
    from speedbench_plugin.cross_engine import compare_runs

    def measured(results: list[StreamResult]) -> MeasuredRound:
        return MeasuredRound(tuple(MeasuredRequest(s.request_id, 0, 0, None, s) for s in results), 0.0, 1.0, None, None)

    rechunked = streams()
    rechunked[0].chunks = [Chunk(1.0, (1,)), Chunk(2.0, (2, 3)), Chunk(3.0, (4, 5)), Chunk(4.0, (6, 7, EOS))]
    same = compare_runs(measured(streams()), measured(rechunked), k=3)
    assert same["same_outputs"] and same["outputs_sha256"][0] == same["outputs_sha256"][1]
    assert same["acceptance_length"][0] != same["acceptance_length"][1]  # same work, other steps
    changed = streams()
    changed[3].chunks[-1] = Chunk(4.0, (5,))
    other = compare_runs(measured(streams()), measured(changed), k=3)
    assert not other["same_outputs"] and [r["first_divergence"] for r in other["rows"]] == [None, None, None, 3]


def test_a_coalesced_stream_is_named_so_in_the_table_not_as_a_gap() -> None:
    """Chunks of several steps by the suite's own choice (vLLM's coalesced stream) are no fidelity
    gap when the figures come from the engine's per-step record; the same merge without that
    record stays 'merged' with its size."""
    check = m.fidelity(m.StreamSteps(4, 16, (0, 0, 0, 4), merged_chunks=4), SpecCounts(6, 18, 8, [3, 3, 2], "vllm:per_request"),
                       cut_at_end=0, bound=0)
    assert check.verdict == m.MERGED_STEPS
    base = make_record(category="coding", split="qualitative")
    record = replace(base, fidelity={"per_request": check}, engine={"engine": "vllm", "stream_mode": {"mode": "coalesced"}},
                     acceptance=replace(base.acceptance, histogram_source="engine:vllm:per_request"))
    assert _fidelity_cell(record) == "coalesced"
    from_stream = replace(record, acceptance=replace(base.acceptance, histogram_source="stream"))
    assert _fidelity_cell(from_stream).startswith("merged +")
    per_step = replace(record, engine={"engine": "vllm", "stream_mode": {"mode": "per-step"}})
    assert _fidelity_cell(per_step).startswith("merged +")


def test_the_table_shows_the_recorded_cost_per_token_only_when_a_record_has_one() -> None:
    """A cost column with the record's own figures (CPU ms per output token and the ``none``
    drafter's cost over the case's); none at all when no record measured its cost."""
    from speedbench_plugin.reports import render_table

    plain = make_record("none", category="coding", split="qualitative")
    sd = make_record(category="coding", split="qualitative", sections={
        "cost": {"cpu_s_per_output_token": 0.00125}, "cost_vs_none": {"cpu_s_per_output_token": 1.12}})
    table = render_table([plain, sd], width=300)
    assert "CPU ms/out" in table and "1.250 (1.12x)" in table and "GPU J/out" not in table
    assert "none drafter's over this case's" in table
    assert "CPU ms/out" not in render_table([plain, make_record(category="coding", split="qualitative")], width=300)
