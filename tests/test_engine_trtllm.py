"""The TensorRT-LLM adapter's real ``start()``/``generate()``/``counters()`` against a stand-in
``tensorrt_llm`` module (TensorRT-LLM needs CUDA): the stand-in replays recorded outputs of the
documented shapes (tests/samples/trtllm_*.json) and records what the adapter passed it. The real
engine: ``gpu``."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, EngineError, Sampling
from speedbench_plugin.engines.trtllm import TRTLLMEngine

SAMPLES = Path(__file__).parent / "samples"
RELEASES = json.loads((SAMPLES / "trtllm_releases.json").read_text())
STREAM = json.loads((SAMPLES / "trtllm_stream.json").read_text())
STATS = json.loads((SAMPLES / "trtllm_iteration_stats.json").read_text())


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


class StandInTRTLLM:
    """A stand-in for the ``tensorrt_llm`` package: ``LLM`` replays a recorded stream per request
    and hands out recorded iteration stats in the batches given, draining as the real queue does."""

    def __init__(self, release: str, stats_batches: list[list[Any]] | None = None) -> None:
        self.release = RELEASES[release]
        self.stats_batches = list(stats_batches or [])
        self.llms: list[Any] = []
        self.sampling: list[Any] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        stand_in = self

        def config_class(name: str, fields: list[str]) -> type:
            def __init__(self, **kwargs: Any) -> None:
                unknown = set(kwargs) - set(fields)
                if unknown:
                    raise TypeError(f"{name}: unexpected {sorted(unknown)}")
                self.kwargs = kwargs

            return type(name, (), {"model_fields": {f: None for f in fields}, "__init__": __init__})

        llmapi = types.ModuleType("tensorrt_llm.llmapi")
        for name, fields in self.release["classes"].items():
            setattr(llmapi, name, config_class(name, fields))
        sampling_params = dataclasses.make_dataclass("SamplingParams", [(f, Any, None) for f in self.release["sampling"]])

        class LLM:
            def __init__(self, **kwargs: Any) -> None:
                self.kwargs = kwargs
                self.closed = False
                stand_in.llms.append(self)

            async def generate_async(self, prompt_ids: list[int], params: Any, streaming: bool):
                assert streaming is True
                stand_in.sampling.append(params)
                for state in STREAM["outputs"]:
                    await asyncio.sleep(0)
                    yield types.SimpleNamespace(outputs=[types.SimpleNamespace(**state)])

            def get_stats(self, timeout: float) -> list[Any]:
                return stand_in.stats_batches.pop(0) if stand_in.stats_batches else []

            def shutdown(self) -> None:
                self.closed = True

        root = types.ModuleType("tensorrt_llm")
        root.LLM = LLM  # type: ignore[attr-defined]
        root.SamplingParams = sampling_params  # type: ignore[attr-defined]
        root.llmapi = llmapi  # type: ignore[attr-defined]
        root.__version__ = "stand-in"  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt_llm", root)
        monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", llmapi)


def _drive(engine: TRTLLMEngine, n_requests: int, sampling: Sampling | None = None):
    sampling = sampling or Sampling(max_tokens=7, ignore_eos=True, seed=9)

    async def main():
        await engine.start()
        try:
            before = await engine.counters()
            results = [await engine.generate([1, 2, 3], sampling, f"t{i}") for i in range(n_requests)]
            return before, results, await engine.counters()
        finally:
            await engine.stop()

    return asyncio.run(main())


# --- start(): the decoding config the installed release has ---------------------------------------

@pytest.mark.parametrize(
    ("spec", "cls", "fields"),
    [
        ("eagle3:k=3,model=/e3", "Eagle3DecodingConfig", {"max_draft_len": 3, "speculative_model": "/e3"}),
        ("eagle:k=2,model=/e", "EagleDecodingConfig", {"max_draft_len": 2, "speculative_model": "/e"}),
        ("draft:k=4,model=/d", "DraftTargetDecodingConfig", {"max_draft_len": 4, "speculative_model": "/d"}),
        ("ngram:k=3,max=2", "NGramDecodingConfig", {"max_draft_len": 3, "max_matching_ngram_size": 2}),
        ("mtp:k=3", "MTPDecodingConfig", {"num_nextn_predict_layers": 3}),
    ],
)
def test_drafters_start_with_their_decoding_config(monkeypatch, spec, cls, fields):
    stand_in = StandInTRTLLM("current")
    stand_in.install(monkeypatch)
    engine = TRTLLMEngine(EngineConfig("/t", DrafterSpec.parse(spec), {"tensor_parallel_size": 8}))
    _drive(engine, 0)
    llm = stand_in.llms[0]
    config = llm.kwargs.pop("speculative_config")
    assert type(config).__name__ == cls and config.kwargs == fields
    off = spec.split(":")[0] in ("ngram", "draft")  # these need the overlap scheduler off
    assert llm.kwargs == {"model": "/t", "enable_iter_perf_stats": True, "iter_stats_max_iterations": 100_000,
                          "tensor_parallel_size": 8, **({"disable_overlap_scheduler": True} if off else {})}
    assert llm.closed and engine.describe()["speculative_config_class"] == cls


def test_release_1_0_spellings(monkeypatch):
    stand_in = StandInTRTLLM("1.0")
    stand_in.install(monkeypatch)
    engine = TRTLLMEngine(EngineConfig("/t", DrafterSpec.parse("eagle3:k=3,model=/e3")))
    _drive(engine, 1)
    config = stand_in.llms[0].kwargs["speculative_config"]
    # 1.0: no Eagle3DecodingConfig (EAGLE-3 went through EagleDecodingConfig), speculative_model_dir
    assert type(config).__name__ == "EagleDecodingConfig"
    assert config.kwargs == {"max_draft_len": 3, "speculative_model_dir": "/e3"}
    params = stand_in.sampling[0]
    assert (params.random_seed, params.max_tokens, params.ignore_eos) == (9, 7, True)  # seed -> random_seed


def test_what_the_release_lacks_is_an_error_naming_it(monkeypatch):
    StandInTRTLLM("1.0").install(monkeypatch)
    with pytest.raises(EngineError, match="no tensorrt_llm.llmapi.DraftTargetDecodingConfig"):
        _drive(TRTLLMEngine(EngineConfig("/t", DrafterSpec.parse("draft:k=3,model=/d"))), 0)
    with pytest.raises(EngineError, match="model=PATH"):
        _drive(TRTLLMEngine(EngineConfig("/t", DrafterSpec("draft", 3))), 0)
    with pytest.raises(EngineError, match="no minimum match size"):
        _drive(TRTLLMEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=3,max=3,min=2"))), 0)


# --- generate() and counters() on recorded outputs ------------------------------------------------

def test_stream_and_iteration_stats(monkeypatch):
    # the stats queue as it fills: nothing before the first request, then two drains
    stand_in = StandInTRTLLM("current", [[], STATS[:3], STATS[3:]])
    stand_in.install(monkeypatch)
    engine = TRTLLMEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=3")))
    before, results, after = _drive(engine, 1)
    (result,) = results
    assert [list(c.token_ids) for c in result.chunks] == STREAM["expected_chunks"]  # the repeated state adds none
    times = [c.t for c in result.chunks]
    assert times == sorted(times) and result.t_submit <= times[0]
    assert result.finish_reason == "length" and result.spec is None and result.steps is None
    assert result.spec_raw == {"decoding_iter": 3, "output_tokens": 7, "avg_decoded_tokens_per_iter": 2.3333333333333335,
                               "implied_acceptance_length": 7 / 3}
    params = stand_in.sampling[0]
    assert (params.seed, params.detokenize, params.temperature) == (9, False, 0.0)
    assert before is None  # no iteration carried SD stats yet: unavailable, not zero
    assert (after.num_drafts, after.num_draft_tokens, after.num_accepted_tokens) == (4, 12, 5)
    assert after.accepted_per_pos == [] and after.source == "trtllm:iteration_stats"
    caps = engine.capabilities
    assert caps.counter_sources == ("trtllm:iteration_stats",) and not caps.per_step_record
    assert any("per-position" in m for m in caps.missing)
    assert engine.describe()["engine_version"] == "tensorrt_llm==stand-in"


def test_counters_accumulate_across_drains(monkeypatch):
    stand_in = StandInTRTLLM("current", [STATS[:2], STATS[2:], []])
    stand_in.install(monkeypatch)
    engine = TRTLLMEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=3")))
    before, _, after = _drive(engine, 1)
    assert (before.num_drafts, before.num_accepted_tokens) == (2, 4)
    # the second drain adds to the first; an empty third drain changes nothing
    assert (after.num_drafts, after.num_draft_tokens, after.num_accepted_tokens) == (5, 15, 8)


def test_no_drafter_no_counters(monkeypatch):
    StandInTRTLLM("current", [STATS]).install(monkeypatch)
    engine = TRTLLMEngine(EngineConfig("/t", DrafterSpec.parse("none")))
    before, results, after = _drive(engine, 1)
    assert before is None and after is None and results[0].output_tokens == 7
    assert engine.capabilities.counter_sources == ()


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
    pytest.importorskip("tensorrt_llm")

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
