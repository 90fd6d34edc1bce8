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
  alone. All are parsed; which one was found is named in the source.

A GPU run still has to confirm: the stream really is one chunk per verify step (or at least that
chunk sizes sum to completion_tokens), the counters' names on the installed release, and that
``spec_verify_ct`` excludes the prefill step (if it includes it, AL from it is ~1/n low).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import (
    Chunk,
    Engine,
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


def sampling_params_for(sampling: Sampling) -> dict[str, Any]:
    params: dict[str, Any] = {
        "max_new_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "ignore_eos": sampling.ignore_eos,
    }
    if sampling.temperature > 0 and sampling.seed is not None:
        params["sampling_seed"] = sampling.seed  # per-request seed (SGLang >= 0.5)
    return params


def _first(meta: dict[str, Any], *names: str) -> Any:
    """The value under the first of ``names`` present: SGLang renamed these fields over releases."""
    for name in names:
        if meta.get(name) is not None:
            return meta[name]
    return None


def counts_from_meta_info(meta: dict[str, Any], k: int | None = None) -> SpecCounts | None:
    """Per-request SpecCounts from a finished chunk's ``meta_info``; None when it has no SD fields.

    ``num_drafts`` = ``spec_verify_ct`` (every SGLang verify step carries a draft).
    ``accepted_per_pos[i]`` comes from the histogram (steps that accepted more than ``i``): a chain
    accepts a prefix. Without a histogram it stays empty rather than guessed.
    """
    verify_ct = meta.get("spec_verify_ct")
    if verify_ct is None:
        return None
    verify_ct = int(verify_ct)
    accepted = _first(meta, "spec_num_correct_drafts", "spec_accepted_drafts", "spec_accept_token_num")
    proposed = _first(meta, "spec_num_proposed_drafts", "spec_proposed_drafts", "spec_draft_token_num")
    histogram = _first(meta, "spec_correct_drafts_histogram", "spec_accept_histogram")
    source = "sglang:meta_info"
    if accepted is None:
        # Oldest releases: each verify step emits accepted + 1 tokens.
        completion = meta.get("completion_tokens")
        if completion is None or verify_ct == 0:
            return None
        accepted = max(int(completion) - verify_ct, 0)
        source = "sglang:meta_info(derived: completion_tokens - spec_verify_ct)"
    if proposed is None:
        proposed = verify_ct * k if k else 0
        source += "(proposed = spec_verify_ct x k)" if k else "(proposed unknown)"
    per_pos: list[int] = []
    if histogram:
        counts = [int(c) for c in histogram]
        per_pos = [sum(counts[i + 1 :]) for i in range(len(counts) - 1)]
    return SpecCounts(
        num_drafts=verify_ct,
        num_draft_tokens=int(proposed),
        num_accepted_tokens=int(accepted),
        accepted_per_pos=per_pos,
        source=source,
        num_steps=verify_ct,
    )


def finish_reason_of(meta: dict[str, Any]) -> str | None:
    reason = meta.get("finish_reason")
    if isinstance(reason, dict):
        return reason.get("type")
    return reason


@dataclass
class OutputAccumulator:
    """Turns SGLang's streamed ``output_ids`` (cumulative or incremental) into per-chunk deltas."""

    incremental: bool | None = None  # None: decide from meta_info["completion_tokens"]
    ids: list[int] = field(default_factory=list)

    def delta(self, output_ids: Sequence[int], completion_tokens: int | None) -> list[int]:
        output_ids = list(output_ids)
        incremental = self.incremental
        if completion_tokens is not None and self.ids:
            # cumulative: the list is the whole output; incremental: only the new tokens
            incremental = len(output_ids) != completion_tokens
        if incremental is None:
            incremental = False  # the first chunk reads the same either way
        if incremental:
            new = output_ids
        else:
            if output_ids[: len(self.ids)] != self.ids:
                raise EngineError("sglang: cumulative output_ids do not extend the previous chunk")
            new = output_ids[len(self.ids) :]
        self.ids.extend(new)
        return new


def chunks_from_events(events: Iterable[tuple[float, dict[str, Any]]], incremental: bool | None = None) -> tuple[list[Chunk], dict[str, Any] | None]:
    """Pure core of the stream: (timestamp, SGLang output dict) pairs → chunks and the last meta_info."""
    acc = OutputAccumulator(incremental)
    chunks: list[Chunk] = []
    meta: dict[str, Any] | None = None
    for t, out in events:
        meta = out.get("meta_info") or {}
        new = acc.delta(out.get("output_ids") or [], meta.get("completion_tokens"))
        if new:
            chunks.append(Chunk(t, tuple(new)))
    return chunks, meta


def finish_result(result: StreamResult, meta: dict[str, Any] | None, k: int | None) -> StreamResult:
    if meta is None:
        raise EngineError(f"sglang: request {result.request_id} produced no output")
    result.finish_reason = finish_reason_of(meta)
    if result.finish_reason == "abort":
        message = meta["finish_reason"].get("message") if isinstance(meta.get("finish_reason"), dict) else None
        raise EngineError(f"sglang: request {result.request_id} aborted: {message or meta.get('finish_reason')}")
    result.spec = counts_from_meta_info(meta, k)
    if result.spec is not None:
        result.spec_raw = {key: value for key, value in meta.items() if key.startswith("spec_")}
        result.spec_raw["completion_tokens"] = meta.get("completion_tokens")
    return result


class SGLangEngine(Engine):
    name = "sglang"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._engine: Any = None
        self._totals: list[SpecCounts] = []
        self._incremental: bool | None = None

    @property
    def version(self) -> str:
        try:
            return f"sglang=={version('sglang')}"
        except PackageNotFoundError:
            return "sglang (not installed)"

    async def start(self) -> None:
        try:
            import sglang
            from sglang.srt.server_args import ServerArgs
        except ImportError as exc:
            raise EngineError(
                "the sglang engine needs SGLang on a CUDA machine: `pip install \"sglang[all]\"` "
                f"(import failed: {exc})"
            ) from exc
        import dataclasses

        kwargs = adapt_kwargs(engine_kwargs(self.config), (f.name for f in dataclasses.fields(ServerArgs)))
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
        acc = OutputAccumulator(self._incremental)
        meta: dict[str, Any] | None = None
        stream = await self._engine.async_generate(
            input_ids=list(prompt_ids), sampling_params=sampling_params_for(sampling), stream=True
        )
        async for out in stream:
            t = time.perf_counter()
            meta = out.get("meta_info") or {}
            new = acc.delta(out.get("output_ids") or [], meta.get("completion_tokens"))
            if new:
                result.chunks.append(Chunk(t, tuple(new)))
        k = self.config.drafter.k if self.config.drafter.enabled else None
        finish_result(result, meta, k)
        if result.spec is not None:
            self._totals.append(result.spec)
        return result

    async def counters(self) -> SpecCounts | None:
        # SGLang exposes no cumulative draft/accept counters (its /metrics has only the
        # spec_accept_length gauge); the sum of the per-request meta_info counters is the closest
        # engine-reported total, and the source says so.
        if not self.config.drafter.enabled or not self._totals:
            return None
        return SpecCounts.total(self._totals, "sglang:meta_info(sum over requests)")
