"""TensorRT-LLM adapter: drafter → decoding config, sampling, and parsing of streamed outputs and
iteration stats on recorded samples of the documented shapes. The real engine needs CUDA (``gpu``)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, EngineError, Sampling
from speedbench_plugin.engines.trtllm import (
    TRTLLMEngine,
    adapt_sampling_kwargs,
    adapt_spec_kwargs,
    chunks_from_outputs,
    counts_from_iteration_stats,
    llm_kwargs,
    request_raw,
    resolve_spec_class,
    sampling_kwargs,
    spec_config_for,
)

SAMPLES = Path(__file__).parent / "samples"


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("eagle3:k=3,model=/e3", ("Eagle3DecodingConfig", {"max_draft_len": 3, "speculative_model": "/e3"})),
        ("eagle:k=2,model=/e", ("EagleDecodingConfig", {"max_draft_len": 2, "speculative_model": "/e"})),
        ("draft:k=4,model=/d", ("DraftTargetDecodingConfig", {"max_draft_len": 4, "speculative_model": "/d"})),
        ("ngram:k=3,max=2", ("NGramDecodingConfig", {"max_draft_len": 3, "max_matching_ngram_size": 2})),
        ("mtp:k=3", ("MTPDecodingConfig", {"num_nextn_predict_layers": 3})),
    ],
)
def test_spec_config_mapping(spec, expected):
    assert spec_config_for(DrafterSpec.parse(spec)) == expected


def test_spec_config_errors_and_none():
    assert spec_config_for(DrafterSpec.parse("none")) is None
    with pytest.raises(EngineError, match="model=PATH"):
        spec_config_for(DrafterSpec("draft", 3))
    with pytest.raises(EngineError, match="min"):
        spec_config_for(DrafterSpec.parse("ngram:k=3,max=3,min=2"))


def test_overlap_scheduler_off_only_where_required():
    for spec, off in [("ngram:k=3", True), ("draft:k=3,model=/d", True), ("eagle3:k=3,model=/e", False),
                      ("mtp:k=3", False), ("none", False)]:
        kwargs = llm_kwargs(EngineConfig("/t", DrafterSpec.parse(spec)))
        assert kwargs.get("disable_overlap_scheduler", False) is off, spec
        assert kwargs["enable_iter_perf_stats"] is True


def test_engine_args_pass_through():
    kwargs = llm_kwargs(EngineConfig("/t", DrafterSpec.parse("eagle3:k=3,model=/e"),
                                     engine_args={"tensor_parallel_size": 8, "max_batch_size": 32}))
    assert (kwargs["tensor_parallel_size"], kwargs["max_batch_size"], kwargs["model"]) == (8, 32, "/t")


def test_release_differences_are_adapted():
    # 1.0 had no Eagle3DecodingConfig and called the checkpoint field speculative_model_dir
    eagle3 = DrafterSpec.parse("eagle3:k=3,model=/e3")
    assert resolve_spec_class(eagle3, {"EagleDecodingConfig"}) == "EagleDecodingConfig"
    assert resolve_spec_class(eagle3, {"Eagle3DecodingConfig", "EagleDecodingConfig"}) == "Eagle3DecodingConfig"
    with pytest.raises(EngineError, match="MTPDecodingConfig"):
        resolve_spec_class(DrafterSpec.parse("mtp:k=1"), {"EagleDecodingConfig"})
    old = adapt_spec_kwargs({"max_draft_len": 3, "speculative_model": "/e3"}, {"max_draft_len", "speculative_model_dir"})
    assert old == {"max_draft_len": 3, "speculative_model_dir": "/e3"}
    with pytest.raises(EngineError, match="no field"):
        adapt_spec_kwargs({"max_draft_len": 3, "bogus": 1}, {"max_draft_len"})
    sampling = sampling_kwargs(Sampling(max_tokens=5, seed=9, ignore_eos=True))
    assert sampling == {"max_tokens": 5, "temperature": 0.0, "top_p": 1.0, "ignore_eos": True,
                        "detokenize": False, "seed": 9}
    assert adapt_sampling_kwargs(sampling, {"max_tokens", "temperature", "top_p", "ignore_eos", "random_seed"}) == {
        "max_tokens": 5, "temperature": 0.0, "top_p": 1.0, "ignore_eos": True, "random_seed": 9}


def test_iteration_stats_sample():
    stats = json.loads((SAMPLES / "trtllm_iteration_stats.json").read_text())
    counts = counts_from_iteration_stats(stats)
    assert (counts.num_drafts, counts.num_draft_tokens, counts.num_accepted_tokens) == (5, 15, 8)
    assert counts.accepted_per_pos == []  # TensorRT-LLM reports no per-position acceptance
    assert counts.source == "trtllm:iteration_stats"
    # no SD in any iteration -> no counters, not zeros
    assert counts_from_iteration_stats(stats[:1]) is None
    assert counts_from_iteration_stats([]) is None


def test_stream_sample():
    data = json.loads((SAMPLES / "trtllm_stream.json").read_text())
    chunks, last = chunks_from_outputs([(float(i), o) for i, o in enumerate(data["outputs"])])
    assert [list(c.token_ids) for c in chunks] == data["expected_chunks"]
    assert [c.t for c in chunks] == [0.0, 1.0, 3.0]  # the repeated state added no chunk
    raw = request_raw(last, sum(c.n_tokens for c in chunks))
    assert raw == {"decoding_iter": 3, "output_tokens": 7, "avg_decoded_tokens_per_iter": 2.3333333333333335,
                   "implied_acceptance_length": 7 / 3}
    assert request_raw({"token_ids": [1]}, 1) is None


def test_missing_package_names_it():
    try:
        import tensorrt_llm  # noqa: F401
    except ImportError:
        engine = TRTLLMEngine(EngineConfig("/m", DrafterSpec.parse("none")))
        with pytest.raises(EngineError, match="pip install tensorrt_llm"):
            asyncio.run(engine.start())
    else:
        pytest.skip("tensorrt_llm is installed here")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not _cuda(), reason="TensorRT-LLM needs a CUDA GPU")
def test_real_trtllm_ngram_counters(tiny_model_dir):
    async def main():
        engine = TRTLLMEngine(EngineConfig(tiny_model_dir, DrafterSpec.parse("ngram:k=3")))
        await engine.start()
        try:
            before = await engine.counters()
            result = await engine.generate([1, 2, 3, 4, 5] * 12, Sampling(max_tokens=48, ignore_eos=True), "t0")
            after = await engine.counters()
            return result, before, after
        finally:
            await engine.stop()

    result, before, after = asyncio.run(main())
    assert result.output_tokens == 48
    assert after is not None and after.num_drafts > (before.num_drafts if before else 0)
