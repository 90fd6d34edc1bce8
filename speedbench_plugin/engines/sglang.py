"""SGLang in-process engine (``--speedbench-engine sglang``): ``sglang.Engine`` with token-id input.

Not installable on this machine (CUDA only); written against the documented API and unit-tested on
recorded samples of its documented shapes (tests/samples/sglang_*.json). What was relied on:

* ``sgl.Engine(model_path=..., skip_tokenizer_init=True, speculative_algorithm=..., ...)`` takes
  ``ServerArgs`` fields as keywords; ``speculative_algorithm`` is one of ``EAGLE``, ``EAGLE3``,
  ``STANDALONE`` (small draft model), ``NGRAM``, ``NEXTN`` (MTP; an alias of EAGLE that reuses the
  target's own MTP layers). A chain of ``k`` drafts is ``speculative_num_steps=k``,
  ``speculative_eagle_topk=1``, ``speculative_num_draft_tokens=k+1`` (docs.sglang.io
  "Speculative Decoding"; python/sglang/srt/server_args.py). NGRAM reads
  ``speculative_num_draft_tokens`` and ``speculative_ngram_{min,max}_match_window_size``; a BFS
  breadth of 1 keeps its draft a chain.
* ``await engine.async_generate(input_ids=[...], sampling_params={...}, stream=True)`` yields dicts
  ``{"output_ids": [...], "meta_info": {...}}`` (plus ``"text"`` when a tokenizer is loaded).
  ``output_ids`` is the *whole* output so far unless the server runs with incremental streaming
  (``incremental_streaming_output``, formerly ``stream_output``), in which case it is the delta
  (python/sglang/srt/managers/tokenizer_manager.py, ``_handle_batch_output``).
  ``meta_info["completion_tokens"]`` is always cumulative, which tells the two apart.
* On the finished chunk, ``meta_info`` carries the request's SD counters
  (``TokenizerManager._calculate_spec_decoding_metrics``): ``spec_verify_ct`` (verify steps),
  ``spec_num_correct_drafts`` (accepted draft tokens), ``spec_num_proposed_drafts``
  (= verify_ct × (num_draft_tokens − 1)), ``spec_correct_drafts_histogram`` (steps by accepted
  count), ``spec_accept_rate``, ``spec_accept_length`` (= completion_tokens / verify_ct). Older
  releases used ``spec_accepted_drafts``/``spec_proposed_drafts``/``spec_accept_histogram`` and, before
  that, ``spec_accept_token_num``/``spec_draft_token_num``; the oldest carried ``spec_verify_ct``
  alone. All are parsed (:mod:`.wire`, shared with the ``openai`` engine against SGLang servers);
  which one was found is named in the source.

Capabilities are read from the installed release, not its version: ``ServerArgs`` fields (older
spellings are renamed, unknown user arguments are an error) and the ``SpeculativeAlgorithm`` members
(a drafter whose algorithm the release lacks is an error naming it).

A GPU run still has to confirm: the stream really is one chunk per verify step (or at least that
chunk sizes sum to completion_tokens), the counters' names on the installed release, and that
``spec_verify_ct`` excludes the prefill step (if it includes it, AL from it is ~1/n low).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines import wire
from speedbench_plugin.engines.base import (
    Chunk,
    Engine,
    EngineCapabilities,
    EngineConfig,
    EngineError,
    Sampling,
    SpecCounts,
    StreamResult,
)

ALGORITHMS = {"eagle": "EAGLE", "eagle3": "EAGLE3", "draft": "STANDALONE", "ngram": "NGRAM", "mtp": "NEXTN"}
# Older ServerArgs spellings, tried when the installed release lacks the current name.
LEGACY_NAMES = {
    "incremental_streaming_output": "stream_output",
    "speculative_ngram_min_match_window_size": "speculative_ngram_min_window_size",
    "speculative_ngram_max_match_window_size": "speculative_ngram_max_window_size",
}


def server_args_for(drafter: DrafterSpec) -> dict[str, Any]:
    """``sgl.Engine`` keyword arguments for a drafter (a chain of ``k`` drafts per step)."""
    if not drafter.enabled:
        return {}
    algorithm = ALGORITHMS[drafter.method]
    args: dict[str, Any] = {"speculative_algorithm": algorithm, "speculative_num_draft_tokens": drafter.k + 1}
    if drafter.method == "ngram":
        args["speculative_ngram_min_match_window_size"] = drafter.option("min", 1)
        args["speculative_ngram_max_match_window_size"] = drafter.option("max", drafter.k)
        args["speculative_ngram_max_bfs_breadth"] = 1
        return args
    args["speculative_num_steps"] = drafter.k
    args["speculative_eagle_topk"] = 1
    if drafter.model:
        args["speculative_draft_model_path"] = drafter.model
    elif drafter.method in ("eagle", "eagle3", "draft"):
        raise EngineError(f"sglang engine: drafter {drafter} needs model=PATH (speculative_draft_model_path)")
    return args


def engine_kwargs(config: EngineConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model_path": config.model,
        "skip_tokenizer_init": True,
        "random_seed": config.seed,
    }
    kwargs.update(server_args_for(config.drafter))
    kwargs.update(config.engine_args)  # engine args win: e.g. a tree (topk>1) for EAGLE
    return kwargs


def adapt_kwargs(kwargs: dict[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """Rename to the installed release's spellings; unknown names are a clear error, not dropped."""
    known = set(known)
    adapted: dict[str, Any] = {}
    unknown = []
    for key, value in kwargs.items():
        if key in known:
            adapted[key] = value
        elif LEGACY_NAMES.get(key) in known:
            adapted[LEGACY_NAMES[key]] = value
        else:
            unknown.append(key)
    if unknown:
        raise EngineError(f"sglang engine: this SGLang release has no server argument(s) {', '.join(sorted(unknown))}")
    return adapted


def speculative_algorithms() -> frozenset[str] | None:
    """The installed release's ``SpeculativeAlgorithm`` members; None where it does not list them."""
    try:
        from sglang.srt.speculative.spec_info import SpeculativeAlgorithm
    except ImportError:
        return None
    return frozenset(getattr(SpeculativeAlgorithm, "__members__", {}))


SOURCE_TOTAL = f"{wire.SGLANG_META_INFO}(sum over requests)"
MISSING = (
    ("no per-step record: SGLang reports per-request totals and a histogram, not each step, so the stream's "
     "step histogram stands unchecked against merged chunks"),
    ("no engine-wide draft/accept counters (its /metrics has only the spec_accept_length gauge): the counter "
     "total is the sum of per-request meta_info"),
)


class SGLangEngine(Engine):
    name = "sglang"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._engine: Any = None
        self._totals: list[SpecCounts] = []
        self._incremental: bool | None = None
        self._module: Any = None
        self._meta_fields: dict[str, str | None] | None = None

    @property
    def version(self) -> str:
        try:
            return f"sglang=={version('sglang')}"
        except PackageNotFoundError:
            module = self._module
            return f"sglang=={module.__version__}" if getattr(module, "__version__", None) else "sglang (not installed)"

    @property
    def capabilities(self) -> EngineCapabilities:
        if not self.config.drafter.enabled:
            return EngineCapabilities(missing=MISSING)
        missing = list(MISSING)
        if self._meta_fields and (self._meta_fields["accepted"] is None or self._meta_fields["histogram"] is None):
            missing.append(f"this release's meta_info carries only {self._meta_fields}: per-position rates unavailable")
        return EngineCapabilities(counter_sources=(wire.SGLANG_META_INFO, SOURCE_TOTAL), missing=tuple(missing))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["meta_info_fields"] = self._meta_fields
        if self._engine is not None:
            info["resolved_config"] = resolved_config(self._engine)
        return info

    async def start(self) -> None:
        try:
            import sglang
            from sglang.srt.server_args import ServerArgs
        except ImportError as exc:
            raise EngineError(
                "the sglang engine needs SGLang on a CUDA machine: `pip install \"sglang[all]\"` "
                f"(import failed: {exc})"
            ) from exc
        self._module = sglang
        wanted = engine_kwargs(self.config)
        algorithm = wanted.get("speculative_algorithm")
        offered = speculative_algorithms()
        if algorithm and offered is not None and algorithm not in offered:
            raise EngineError(
                f"sglang engine: drafter {self.config.drafter} needs speculative_algorithm {algorithm}, which this "
                f"SGLang release lacks (it offers {', '.join(sorted(offered))})"
            )
        kwargs = adapt_kwargs(wanted, (f.name for f in dataclasses.fields(ServerArgs)))
        for name in ("incremental_streaming_output", "stream_output"):
            if name in kwargs:
                self._incremental = bool(kwargs[name])
        try:
            self._engine = sglang.Engine(**kwargs)
        except Exception as exc:
            raise EngineError(f"SGLang failed to start {self.config.model} with {self.config.drafter}: {exc}") from exc

    async def stop(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        if self._engine is None:
            raise EngineError("sglang engine: generate() before start()")
        result = StreamResult(request_id=request_id, prompt_tokens=len(prompt_ids), t_submit=time.perf_counter())
        acc = wire.SGLangOutputs(self._incremental)
        meta: dict[str, Any] | None = None
        stream = await self._engine.async_generate(
            input_ids=list(prompt_ids), sampling_params=wire.sglang_sampling_params(sampling), stream=True
        )
        async for out in stream:
            t = time.perf_counter()
            meta = out.get("meta_info") or {}
            new = acc.delta(out.get("output_ids") or [], meta.get("completion_tokens"))
            if new:
                result.chunks.append(Chunk(t, tuple(new)))
        k = self.config.drafter.k if self.config.drafter.enabled else None
        wire.sglang_finish(result, meta, k)
        if meta and self._meta_fields is None:
            self._meta_fields = wire.sglang_meta_fields(meta)
        if result.spec is not None:
            self._totals.append(result.spec)
        return result

    async def counters(self) -> SpecCounts | None:
        # SGLang exposes no cumulative draft/accept counters (its /metrics has only the
        # spec_accept_length gauge); the sum of the per-request meta_info counters is the closest
        # engine-reported total, and the source says so.
        if not self.config.drafter.enabled or not self._totals:
            return None
        return SpecCounts.total(self._totals, SOURCE_TOTAL)


def resolved_config(engine: Any) -> dict[str, Any]:
    """The server arguments the running engine resolved (``Engine.get_server_info()``), or what
    kept it from saying."""
    try:
        info = engine.get_server_info()
    except Exception as exc:  # noqa: BLE001 - an engine that cannot say still ran
        return {"source": "sglang: Engine.get_server_info()", "comparable": None, "error": f"{type(exc).__name__}: {exc}"}
    return wire.sglang_resolved_config(dict(info or {}), "sglang: Engine.get_server_info()")
