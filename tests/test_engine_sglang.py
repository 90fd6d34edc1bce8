"""The SGLang adapter's real ``start()``/``generate()``/``counters()`` against a stand-in ``sglang``
module (SGLang needs CUDA): the stand-in replays recorded outputs of the documented shapes
(tests/samples/sglang_*.json) and records what the adapter passed it. The real engine: ``gpu``."""
from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines import wire
from speedbench_plugin.engines.base import EngineConfig, EngineError, Sampling
from speedbench_plugin.engines.sglang import SGLangEngine

SAMPLES = Path(__file__).parent / "samples"
RELEASES = json.loads((SAMPLES / "sglang_releases.json").read_text())
META_VERSIONS = json.loads((SAMPLES / "sglang_meta_info_versions.json").read_text())


def _load(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


class StandInSGLang:
    """A stand-in for the ``sglang`` package: ``Engine`` replays recorded streams."""

    def __init__(self, release: str, streams: list[list[dict[str, Any]]]) -> None:
        self.release = RELEASES[release]
        self.streams = list(streams)
        self.engines: list[Any] = []
        self.requests: list[dict[str, Any]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        stand_in = self
        server_args = dataclasses.make_dataclass("ServerArgs", [(n, Any, None) for n in self.release["server_args"]])
        algorithm = enum.Enum("SpeculativeAlgorithm", {n: i for i, n in enumerate(self.release["algorithms"])})

        class Engine:
            def __init__(self, **kwargs: Any) -> None:
                self.kwargs = kwargs
                self.closed = False
                stand_in.engines.append(self)

            async def async_generate(self, input_ids: list[int], sampling_params: dict[str, Any], stream: bool):
                stand_in.requests.append({"input_ids": input_ids, "sampling_params": sampling_params, "stream": stream})
                events = stand_in.streams.pop(0)

                async def replay():
                    for event in events:
                        await asyncio.sleep(0)
                        yield event

                return replay()

            def shutdown(self) -> None:
                self.closed = True

        root = types.ModuleType("sglang")
        root.Engine = Engine  # type: ignore[attr-defined]
        root.__version__ = "stand-in"  # type: ignore[attr-defined]
        modules = {"sglang": root, "sglang.srt": types.ModuleType("sglang.srt"),
                   "sglang.srt.server_args": types.ModuleType("sglang.srt.server_args"),
                   "sglang.srt.speculative": types.ModuleType("sglang.srt.speculative"),
                   "sglang.srt.speculative.spec_info": types.ModuleType("sglang.srt.speculative.spec_info")}
        modules["sglang.srt.server_args"].ServerArgs = server_args  # type: ignore[attr-defined]
        modules["sglang.srt.speculative.spec_info"].SpeculativeAlgorithm = algorithm  # type: ignore[attr-defined]
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)


def _drive(engine: SGLangEngine, n_requests: int, max_tokens: int = 7):
    async def main():
        await engine.start()
        try:
            results = [await engine.generate([1, 2, 3, 4], Sampling(max_tokens, ignore_eos=True), f"r{i}")
                       for i in range(n_requests)]
            return results, await engine.counters()
        finally:
            await engine.stop()

    return asyncio.run(main())


# --- start(): arguments the installed release accepts --------------------------------------------

@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [("eagle3:k=3,model=/d", "EAGLE3"), ("eagle:k=3,model=/d", "EAGLE"), ("draft:k=3,model=/d", "STANDALONE"),
     ("mtp:k=3", "NEXTN")],
)
def test_model_drafters_start_a_chain_of_k(monkeypatch, spec, algorithm):
    stand_in = StandInSGLang("current", [])
    stand_in.install(monkeypatch)
    engine = SGLangEngine(EngineConfig("/target", DrafterSpec.parse(spec), seed=5))
    _drive(engine, 0)
    kwargs = stand_in.engines[0].kwargs
    assert kwargs["speculative_algorithm"] == algorithm and kwargs["model_path"] == "/target"
    assert kwargs["skip_tokenizer_init"] is True and kwargs["random_seed"] == 5
    # a chain: k steps, top-1, k drafts + the root token verified per step
    assert (kwargs["speculative_num_steps"], kwargs["speculative_eagle_topk"], kwargs["speculative_num_draft_tokens"]) == (3, 1, 4)
    assert kwargs.get("speculative_draft_model_path") == ("/d" if "model" in spec else None)
    assert stand_in.engines[0].closed


def test_ngram_window_sizes_and_legacy_spellings(monkeypatch):
    current = StandInSGLang("current", [])
    current.install(monkeypatch)
    _drive(SGLangEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=4,max=3,min=2"),
                                     {"incremental_streaming_output": True})), 0)
    kwargs = current.engines[0].kwargs
    assert (kwargs["speculative_algorithm"], kwargs["speculative_num_draft_tokens"]) == ("NGRAM", 5)
    assert (kwargs["speculative_ngram_min_match_window_size"], kwargs["speculative_ngram_max_match_window_size"]) == (2, 3)
    assert kwargs["speculative_ngram_max_bfs_breadth"] == 1 and kwargs["incremental_streaming_output"] is True
    legacy = StandInSGLang("legacy", [])
    legacy.install(monkeypatch)
    _drive(SGLangEngine(EngineConfig("/t", DrafterSpec.parse("eagle3:k=2,model=/d"), {"incremental_streaming_output": True})), 0)
    assert legacy.engines[0].kwargs["stream_output"] is True  # renamed for the older release


def test_what_the_release_lacks_is_an_error_naming_it(monkeypatch):
    legacy = StandInSGLang("legacy", [])
    legacy.install(monkeypatch)
    with pytest.raises(EngineError, match="STANDALONE, which this SGLang release lacks"):
        _drive(SGLangEngine(EngineConfig("/t", DrafterSpec.parse("draft:k=3,model=/d"))), 0)
    with pytest.raises(EngineError, match="NGRAM, which this SGLang release lacks"):
        _drive(SGLangEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=3"))), 0)
    with pytest.raises(EngineError, match="no server argument.*bogus_flag"):
        _drive(SGLangEngine(EngineConfig("/t", DrafterSpec.parse("none"), {"bogus_flag": 1})), 0)
    with pytest.raises(EngineError, match="model=PATH"):
        _drive(SGLangEngine(EngineConfig("/t", DrafterSpec("draft", 3))), 0)
    assert legacy.engines == []  # nothing was started


def test_engine_args_win(monkeypatch):
    stand_in = StandInSGLang("current", [])
    stand_in.install(monkeypatch)
    _drive(SGLangEngine(EngineConfig("/t", DrafterSpec.parse("eagle3:k=3,model=/d"),
                                     {"speculative_eagle_topk": 4, "speculative_num_draft_tokens": 8, "tp_size": 8})), 0)
    kwargs = stand_in.engines[0].kwargs
    assert (kwargs["speculative_eagle_topk"], kwargs["speculative_num_draft_tokens"], kwargs["tp_size"]) == (4, 8, 8)


# --- generate() and counters() on recorded streams -----------------------------------------------

@pytest.mark.parametrize("sample", ["sglang_stream_cumulative.json", "sglang_stream_incremental.json"])
@pytest.mark.parametrize("told", [False, True])
def test_streams_become_chunks_and_counters(monkeypatch, sample, told):
    data = _load(sample)
    stand_in = StandInSGLang("current", [data["events"], data["events"]])
    stand_in.install(monkeypatch)
    args = {"incremental_streaming_output": sample.endswith("incremental.json")} if told else {}
    engine = SGLangEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=3"), args))
    results, counters = _drive(engine, 2)
    for result in results:
        assert [list(c.token_ids) for c in result.chunks] == data["expected_chunks"]
        times = [c.t for c in result.chunks]
        assert times == sorted(times) and result.t_submit <= times[0]
        assert result.finish_reason == "length" and result.steps is None
        spec = result.spec
        assert (spec.num_drafts, spec.num_draft_tokens, spec.num_accepted_tokens) == (3, 9, 3)
        assert spec.accepted_per_pos == [2, 1, 0] and spec.source == "sglang:meta_info"
        # the stream and the counters tell one story: tokens = steps + accepted (+1 prefill token)
        assert result.output_tokens == spec.num_steps + spec.num_accepted_tokens + 1
        assert result.spec_raw["spec_verify_ct"] == 3
    assert stand_in.requests[0] == {"input_ids": [1, 2, 3, 4], "stream": True, "sampling_params": {
        "max_new_tokens": 7, "temperature": 0.0, "top_p": 1.0, "ignore_eos": True}}
    assert (counters.num_drafts, counters.num_accepted_tokens, counters.accepted_per_pos) == (6, 6, [4, 2, 0])
    assert counters.source == "sglang:meta_info(sum over requests)"
    caps = engine.capabilities
    assert caps.counter_sources == ("sglang:meta_info", "sglang:meta_info(sum over requests)")
    assert not caps.per_step_record and any("per-step" in m for m in caps.missing)
    info = engine.describe()
    assert info["engine_version"] == "sglang==stand-in"
    assert info["meta_info_fields"] == {"verify_ct": "spec_verify_ct", "accepted": "spec_num_correct_drafts",
                                        "proposed": "spec_num_proposed_drafts", "histogram": "spec_correct_drafts_histogram"}


@pytest.mark.parametrize("generation", ["current", "aliases_only", "token_num", "verify_ct_only"])
def test_every_meta_info_generation_gives_counters(monkeypatch, generation):
    events = [{"output_ids": list(range(10)), "meta_info": META_VERSIONS[generation]}]
    stand_in = StandInSGLang("current", [events])
    stand_in.install(monkeypatch)
    engine = SGLangEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=3")))
    (result,), counters = _drive(engine, 1, max_tokens=10)
    assert (result.spec.num_drafts, result.spec.num_accepted_tokens, result.spec.num_draft_tokens) == (4, 6, 12)
    assert result.finish_reason == "stop" and counters.num_accepted_tokens == 6
    # a histogram gives per-position counts; without one they stay empty, never guessed
    assert result.spec.accepted_per_pos == ([4, 2, 0] if generation in ("current", "aliases_only") else [])
    if generation == "verify_ct_only":
        assert "derived" in result.spec.source and "x k" in result.spec.source
    assert (generation in ("token_num", "verify_ct_only")) == any("per-position" in m for m in engine.capabilities.missing)


def test_no_speculation_no_counters(monkeypatch):
    events = [{"output_ids": list(range(10)), "meta_info": META_VERSIONS["no_speculation"]}]
    stand_in = StandInSGLang("current", [events])
    stand_in.install(monkeypatch)
    engine = SGLangEngine(EngineConfig("/t", DrafterSpec.parse("none")))
    (result,), counters = _drive(engine, 1, max_tokens=10)
    assert result.spec is None and counters is None and result.output_tokens == 10
    assert engine.capabilities.counter_sources == ()


def test_abort_and_rewritten_history_are_errors(monkeypatch):
    abort = [{"output_ids": [1], "meta_info": {"completion_tokens": 1,
                                               "finish_reason": {"type": "abort", "message": "out of memory"}}}]
    rewrite = [{"output_ids": [1, 2], "meta_info": {"completion_tokens": 2}},
               {"output_ids": [1, 9, 3], "meta_info": {"completion_tokens": 3}}]
    stand_in = StandInSGLang("current", [abort, rewrite])
    stand_in.install(monkeypatch)
    with pytest.raises(EngineError, match="out of memory"):
        _drive(SGLangEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=3"))), 1)
    with pytest.raises(EngineError, match="do not extend"):
        _drive(SGLangEngine(EngineConfig("/t", DrafterSpec.parse("ngram:k=3"))), 1)


def test_sampling_seed_only_when_sampling():
    assert "sampling_seed" not in wire.sglang_sampling_params(Sampling(max_tokens=8, seed=3))
    assert wire.sglang_sampling_params(Sampling(max_tokens=8, temperature=0.7, seed=3))["sampling_seed"] == 3


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
    pytest.importorskip("sglang")

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
