"""The transformers reference engine: drafter mapping, per-step counting, and the lossless check
(greedy output with SD equals greedy output without it, token for token) on real models."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, EngineError, Sampling, StreamResult
from speedbench_plugin.engines.hf import (
    HFEngine,
    assistant_generation_overrides,
    counts_from_steps,
    generate_kwargs_for,
)

# Short synthetic chat turns; the second repeats itself so prompt lookup has something to find.
MESSAGES = [
    [{"role": "user", "content": "List three colours of a rainbow."}],
    [{"role": "user", "content": "Repeat after me: one two three, one two three, one two three."}],
]


@pytest.fixture(scope="module")
def embedded() -> Path:
    from speedbench_plugin.models import embedded_model

    return embedded_model()


@pytest.fixture(scope="module")
def tiny() -> Path:
    from speedbench_plugin.models import tiny_model

    return tiny_model()


@pytest.fixture(scope="module")
def prompts(embedded: Path) -> list[list[int]]:
    from speedbench_plugin.prompts import ChatTokenizer

    tok = ChatTokenizer(str(embedded))
    return [tok.encode_chat(m) for m in MESSAGES]


def run_engine(model: Path, drafter: str, prompts: Sequence[Sequence[int]], sampling: Sampling,
               **engine_args) -> tuple[list[StreamResult], object]:
    async def main():
        engine = HFEngine(EngineConfig(model=str(model), drafter=DrafterSpec.parse(drafter), engine_args=engine_args))
        await engine.start()
        try:
            results = [await engine.generate(p, sampling, f"r{i}") for i, p in enumerate(prompts)]
            return results, await engine.counters()
        finally:
            await engine.stop()

    return asyncio.run(main())


GREEDY = Sampling(max_tokens=24, temperature=0.0, ignore_eos=True)


# --- pure mapping -----------------------------------------------------------------------------

def test_ngram_maps_to_prompt_lookup():
    assert generate_kwargs_for(DrafterSpec.parse("ngram:k=4,max=3")) == {
        "prompt_lookup_num_tokens": 4,
        "max_matching_ngram_size": 3,
    }
    # without max=, the n-gram size defaults to k as on the vllm and sglang adapters
    assert generate_kwargs_for(DrafterSpec.parse("ngram:k=4"))["max_matching_ngram_size"] == 4
    assert generate_kwargs_for(DrafterSpec.parse("none")) == {}


def test_unsupported_drafters_fail_clearly():
    with pytest.raises(EngineError, match="not supported"):
        generate_kwargs_for(DrafterSpec.parse("eagle3:k=3,model=/x"))
    with pytest.raises(EngineError, match="min=2"):
        generate_kwargs_for(DrafterSpec.parse("ngram:k=3,max=3,min=2"))


def test_assistant_config_fixes_k():
    over = assistant_generation_overrides(5)
    assert over == {"num_assistant_tokens": 5, "num_assistant_tokens_schedule": "constant",
                    "assistant_confidence_threshold": 0.0}


def test_counts_from_steps_per_position_and_idle_steps():
    # steps: drafted 3 accepted 2; drafted 0 (no ngram match); drafted 3 accepted 0; drafted 2 accepted 2
    counts = counts_from_steps([3, 0, 3, 2], [2, 0, 0, 2], k=3)
    assert counts.num_steps == 4
    assert counts.num_drafts == 3  # the idle step is a step, not a draft
    assert counts.num_draft_tokens == 8
    assert counts.num_accepted_tokens == 4
    assert counts.accepted_per_pos == [2, 2, 0]


def test_draft_without_model_path_fails(tiny):
    async def main():
        engine = HFEngine(EngineConfig(model=str(tiny), drafter=DrafterSpec("draft", 3)))
        await engine.start()

    with pytest.raises(EngineError, match="draft model path"):
        asyncio.run(main())


# --- real models: the lossless check ----------------------------------------------------------

def _assert_same_tokens(reference: list[StreamResult], other: list[StreamResult], label: str) -> None:
    for ref, res in zip(reference, other):
        assert res.output_ids == ref.output_ids, f"{label}: {res.request_id} diverged from greedy without SD"


def _assert_spec_consistent(results: list[StreamResult]) -> None:
    for res in results:
        assert res.spec is not None and res.spec_raw is not None
        # every step emits accepted + 1 tokens: the counters must explain the stream exactly
        assert res.spec.num_steps == len(res.chunks)
        assert res.spec.num_accepted_tokens + res.spec.num_steps == res.output_tokens
        assert [c.n_tokens for c in res.chunks] == [a + 1 for a in res.spec_raw["per_step_accepted"]]


def test_lossless_on_tiny_model(tiny, prompts):
    base, base_counters = run_engine(tiny, "none", prompts, GREEDY)
    assert base_counters is None  # no SD, no counters: never zeros pretending to be measurements
    assert all(r.output_tokens == GREEDY.max_tokens and r.spec is None for r in base)
    ngram, _ = run_engine(tiny, "ngram:k=3,max=3", prompts, GREEDY)
    _assert_same_tokens(base, ngram, "ngram")
    _assert_spec_consistent(ngram)
    drafted, _ = run_engine(tiny, f"draft:k=3,model={tiny}", prompts, GREEDY)
    _assert_same_tokens(base, drafted, "draft")


def test_draft_equal_to_target_accepts_everything(tiny, prompts):
    k = 3
    results, counters = run_engine(tiny, f"draft:k={k},model={tiny}", prompts, GREEDY)
    _assert_spec_consistent(results)
    for res in results:
        sizes = [c.n_tokens for c in res.chunks]
        # AL = k + 1 on every step but the last, which max_tokens may cut short
        assert sizes[:-1] == [k + 1] * (len(sizes) - 1)
        assert res.spec.num_accepted_tokens == res.spec.num_draft_tokens
        assert res.spec.accepted_per_pos[0] == res.spec.num_drafts
        assert sum(res.spec.accepted_per_pos) == res.spec.num_accepted_tokens
    total = sum(r.spec.num_accepted_tokens for r in results)
    assert counters.num_accepted_tokens == total and counters.source == "hf:update_candidate_strategy"


def test_chunks_are_timestamped_in_order(tiny, prompts):
    results, _ = run_engine(tiny, "ngram:k=3", prompts[:1], GREEDY)
    res = results[0]
    times = [c.t for c in res.chunks]
    assert res.t_submit <= times[0] and times == sorted(times)
    assert res.finish_reason == "length"


def test_sampled_generation_is_seeded(tiny, prompts):
    sampled = Sampling(max_tokens=16, temperature=0.8, top_p=0.95, seed=7, ignore_eos=True)
    first, _ = run_engine(tiny, f"draft:k=2,model={tiny}", prompts[:1], sampled)
    again, _ = run_engine(tiny, f"draft:k=2,model={tiny}", prompts[:1], sampled)
    assert first[0].output_ids == again[0].output_ids
    assert first[0].output_tokens == 16 and first[0].spec.num_drafts > 0


def test_missing_hook_fails_instead_of_reporting_zero(tiny, prompts, monkeypatch):
    # Simulates a transformers release that no longer calls the counted hook.
    monkeypatch.setattr(HFEngine, "_install_counter", lambda self: None)
    with pytest.raises(EngineError, match="update_candidate_strategy"):
        run_engine(tiny, "ngram:k=3", prompts[:1], GREEDY)


@pytest.mark.slow
def test_lossless_on_embedded_model(embedded, prompts):
    from speedbench_plugin.models import draft_model

    greedy = Sampling(max_tokens=20, temperature=0.0, ignore_eos=True)
    base, _ = run_engine(embedded, "none", prompts, greedy)
    ngram, ngram_counts = run_engine(embedded, "ngram:k=3,max=3", prompts, greedy)
    _assert_same_tokens(base, ngram, "ngram")
    _assert_spec_consistent(ngram)
    drafted, draft_counts = run_engine(embedded, f"draft:k=3,model={draft_model(10)}", prompts, greedy)
    _assert_same_tokens(base, drafted, "draft (first 10 layers)")
    _assert_spec_consistent(drafted)
    for label, counts in (("ngram", ngram_counts), ("draft first10", draft_counts)):
        print(f"\nhf embedded {label}: AL(drafting steps)={1 + counts.num_accepted_tokens / max(counts.num_drafts, 1):.3f} "
              f"AR={counts.num_accepted_tokens / max(counts.num_draft_tokens, 1):.3f} steps={counts.num_steps}")


# --- pruned draft vocabulary (vocab=N) --------------------------------------------------------

def test_vocab_mask_sets_pruned_logits_to_minus_inf():
    import torch

    from speedbench_plugin.engines.hf import KeptVocabularyMask

    kept = torch.tensor([True, False, True, False])
    scores = torch.tensor([[0.5, 9.0, 0.1, 8.0, 7.0, 6.0]])  # two columns beyond the mask: never kept
    masked = KeptVocabularyMask(kept)(None, scores)
    assert masked.argmax(-1).item() == 0
    assert torch.isinf(masked[0, [1, 3, 4, 5]]).all() and masked[0, 0] == 0.5 and masked[0, 2] == pytest.approx(0.1)
    assert scores[0, 1] == 9.0  # the caller's tensor is left alone


@pytest.mark.parametrize(("vocab", "message"), [(10**6, "larger than the vocabulary"), (2, "smaller than the 3 special")])
def test_bad_vocab_fails_naming_the_option(tiny, prompts, vocab, message):
    with pytest.raises(EngineError, match=f"vocab={vocab}.*{message}"):
        run_engine(tiny, f"draft:k=3,model={tiny},vocab={vocab}", prompts[:1], GREEDY)


def test_vocab_on_ngram_is_refused_by_the_parser():
    from speedbench_plugin.drafters import DrafterSpecError

    with pytest.raises(DrafterSpecError, match="ngram takes no 'vocab'"):
        DrafterSpec.parse("ngram:k=3,vocab=100")


def test_pruned_self_draft_is_lossless_and_only_accepts_kept_tokens(tiny, prompts):
    """The target drafts for itself: full vocabulary accepts everything; with vocab=N the output is
    unchanged and every accepted draft token is one of the N kept tokens."""
    from speedbench_plugin.vocab import draft_vocabulary

    plain, _ = run_engine(tiny, "none", prompts, GREEDY)
    full, _ = run_engine(tiny, f"draft:k=3,model={tiny}", prompts, GREEDY)
    # Only the 3 special tokens: the random model (which repeats "\n") says none of them.
    pruned, counters = run_engine(tiny, f"draft:k=3,model={tiny},vocab=3", prompts, GREEDY)
    kept = draft_vocabulary(tiny, 3).mask
    for base, f, p in zip(plain, full, pruned):
        assert p.output_ids == base.output_ids == f.output_ids
        inside = sum(1 for tok in p.output_ids if kept[tok])
        assert p.spec.num_accepted_tokens <= inside  # accepted drafts are output tokens from the kept set
        assert f.spec.num_accepted_tokens == f.spec.num_draft_tokens
    assert sum(p.spec.num_accepted_tokens for p in pruned) < sum(f.spec.num_accepted_tokens for f in full)
    assert counters.num_accepted_tokens == sum(p.spec.num_accepted_tokens for p in pruned)


def test_describe_names_the_reference_corpus(tiny):
    async def main():
        engine = HFEngine(EngineConfig(model=str(tiny), drafter=DrafterSpec.parse(f"draft:k=2,model={tiny},vocab=500")))
        await engine.start()
        try:
            return engine.describe()
        finally:
            await engine.stop()

    info = asyncio.run(main())["draft_vocabulary"]
    assert info["vocab"] == 500 and info["applied_by"] == "hf:assistant_logits_processor"
    assert info["corpus"]["tokens"] > 100_000 and len(info["corpus"]["sha256"]) == 64
    assert len(info["kept_sha256"]) == 64
