"""SGLang adapter: drafter → server args, and parsing of streamed outputs and meta_info counters on
recorded samples of the documented shapes (tests/samples/). The real engine needs CUDA (``gpu``)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, EngineError, Sampling, StreamResult
from speedbench_plugin.engines.sglang import (
    OutputAccumulator,
    SGLangEngine,
    adapt_kwargs,
    chunks_from_events,
    counts_from_meta_info,
    engine_kwargs,
    finish_result,
    sampling_params_for,
    server_args_for,
)

SAMPLES = Path(__file__).parent / "samples"


def _load(name: str):
    return json.loads((SAMPLES / name).read_text())


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


# --- drafter spec → sgl.Engine arguments --------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [("eagle3:k=3,model=/d", "EAGLE3"), ("eagle:k=3,model=/d", "EAGLE"), ("draft:k=3,model=/d", "STANDALONE"),
     ("mtp:k=3", "NEXTN")],
)
def test_model_drafters_map_to_a_chain_of_k(spec, algorithm):
    args = server_args_for(DrafterSpec.parse(spec))
    assert args["speculative_algorithm"] == algorithm
    # a chain: k steps, top-1, k drafts + the root token verified per step
    assert (args["speculative_num_steps"], args["speculative_eagle_topk"], args["speculative_num_draft_tokens"]) == (3, 1, 4)
    assert args.get("speculative_draft_model_path") == ("/d" if "model" in spec else None)


def test_ngram_maps_window_sizes():
    args = server_args_for(DrafterSpec.parse("ngram:k=4,max=3,min=2"))
    assert args == {
        "speculative_algorithm": "NGRAM",
        "speculative_num_draft_tokens": 5,
        "speculative_ngram_min_match_window_size": 2,
        "speculative_ngram_max_match_window_size": 3,
        "speculative_ngram_max_bfs_breadth": 1,
    }
    assert server_args_for(DrafterSpec.parse("none")) == {}


def test_draft_model_required():
    with pytest.raises(EngineError, match="model=PATH"):
        server_args_for(DrafterSpec("draft", 3))


def test_engine_args_pass_through_and_win():
    config = EngineConfig("/target", DrafterSpec.parse("eagle3:k=3,model=/d"),
                          engine_args={"speculative_eagle_topk": 4, "speculative_num_draft_tokens": 8, "tp_size": 8})
    kwargs = engine_kwargs(config)
    assert kwargs["model_path"] == "/target" and kwargs["skip_tokenizer_init"] is True
    assert (kwargs["speculative_eagle_topk"], kwargs["speculative_num_draft_tokens"], kwargs["tp_size"]) == (4, 8, 8)


def test_adapt_kwargs_renames_legacy_and_rejects_unknown():
    known = {"model_path", "speculative_ngram_min_window_size", "stream_output"}
    out = adapt_kwargs({"model_path": "/m", "speculative_ngram_min_match_window_size": 1,
                        "incremental_streaming_output": True}, known)
    assert out == {"model_path": "/m", "speculative_ngram_min_window_size": 1, "stream_output": True}
    with pytest.raises(EngineError, match="no server argument"):
        adapt_kwargs({"model_path": "/m", "bogus_flag": 1}, known)


def test_sampling_params():
    greedy = sampling_params_for(Sampling(max_tokens=8, ignore_eos=True))
    assert greedy == {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "ignore_eos": True}
    assert sampling_params_for(Sampling(max_tokens=8, temperature=0.7, seed=3))["sampling_seed"] == 3


# --- parsing streams and counters ---------------------------------------------------------------

@pytest.mark.parametrize("sample", ["sglang_stream_cumulative.json", "sglang_stream_incremental.json"])
def test_stream_chunks_from_sample(sample):
    data = _load(sample)
    events = [(float(i), e) for i, e in enumerate(data["events"])]
    for mode in (None, sample.endswith("incremental.json")):  # auto-detected, and told
        chunks, meta = chunks_from_events(events, incremental=mode)
        assert [list(c.token_ids) for c in chunks] == data["expected_chunks"]
        assert [c.t for c in chunks] == [0.0, 1.0, 2.0, 3.0]
    result = finish_result(StreamResult("r1", 4, 0.0, chunks=chunks), meta, data["drafter_k"])
    assert result.finish_reason == "length"
    spec = result.spec
    assert (spec.num_drafts, spec.num_draft_tokens, spec.num_accepted_tokens) == (3, 9, 3)
    assert spec.accepted_per_pos == [2, 1, 0] and spec.source == "sglang:meta_info"
    # the stream and the counters tell one story: tokens = steps + accepted (+1 prefill token)
    assert result.output_tokens == spec.num_steps + spec.num_accepted_tokens + 1
    assert result.spec_raw["spec_verify_ct"] == 3
    # one chunk per verify step after the prefill token: its size is accepted + 1
    histogram = [0] * (data["drafter_k"] + 1)
    for chunk in chunks[1:]:
        histogram[chunk.n_tokens - 1] += 1
    assert histogram == data["events"][-1]["meta_info"]["spec_correct_drafts_histogram"]


def test_cumulative_stream_that_rewrites_history_is_an_error():
    acc = OutputAccumulator(incremental=False)
    acc.delta([1, 2], 2)
    with pytest.raises(EngineError, match="do not extend"):
        acc.delta([1, 9, 3], 3)


def test_meta_info_names_across_versions():
    versions = _load("sglang_meta_info_versions.json")
    current = counts_from_meta_info(versions["current"], k=3)
    assert (current.num_drafts, current.num_draft_tokens, current.num_accepted_tokens) == (4, 12, 6)
    assert current.accepted_per_pos == [4, 2, 0]
    aliases = counts_from_meta_info(versions["aliases_only"], k=3)
    assert aliases == current
    token_num = counts_from_meta_info(versions["token_num"], k=3)
    assert (token_num.num_draft_tokens, token_num.num_accepted_tokens) == (12, 6)
    assert token_num.accepted_per_pos == []  # no histogram: left empty, never guessed
    oldest = counts_from_meta_info(versions["verify_ct_only"], k=3)
    # derived and labelled: 10 tokens over 4 steps = 6 accepted; proposed assumed k per step
    assert (oldest.num_accepted_tokens, oldest.num_draft_tokens) == (6, 12)
    assert "derived" in oldest.source and "x k" in oldest.source
    assert counts_from_meta_info(versions["no_speculation"], k=3) is None


def test_abort_is_an_error():
    meta = {"completion_tokens": 1, "finish_reason": {"type": "abort", "message": "out of memory"}}
    with pytest.raises(EngineError, match="out of memory"):
        finish_result(StreamResult("r9", 4, 0.0), meta, 3)


def test_missing_package_names_it():
    try:
        import sglang  # noqa: F401
    except ImportError:
        engine = SGLangEngine(EngineConfig("/m", DrafterSpec.parse("none")))
        with pytest.raises(EngineError, match=r"pip install .sglang"):
            asyncio.run(engine.start())
    else:
        pytest.skip("sglang is installed here")


# --- the real engine ----------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not _cuda(), reason="SGLang needs a CUDA GPU")
def test_real_sglang_ngram_stream_matches_counters(tiny_model_dir):
    async def main():
        engine = SGLangEngine(EngineConfig(tiny_model_dir, DrafterSpec.parse("ngram:k=3"),
                                           engine_args={"mem_fraction_static": 0.3}))
        await engine.start()
        try:
            prompt = [1, 2, 3, 4, 5] * 12
            return await engine.generate(prompt, Sampling(max_tokens=48, ignore_eos=True), "g0")
        finally:
            await engine.stop()

    result = asyncio.run(main())
    assert result.output_tokens == 48 and result.spec is not None
    assert result.spec.num_drafts > 0
