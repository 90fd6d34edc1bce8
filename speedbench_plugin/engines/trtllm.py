"""TensorRT-LLM engine (``--speedbench-engine trtllm``): the LLM API (PyTorch backend), token ids in.

Not installable here (CUDA only); written against the documented LLM API and unit-tested on
recorded samples of the documented shapes (tests/samples/trtllm_*.json). What was relied on:

* ``tensorrt_llm.LLM(model, speculative_config=..., enable_iter_perf_stats=True, ...)`` with
  ``tensorrt_llm.llmapi.{Eagle3DecodingConfig, EagleDecodingConfig, NGramDecodingConfig,
  MTPDecodingConfig, DraftTargetDecodingConfig}`` (nvidia.github.io/TensorRT-LLM, "Speculative
  Decoding" and the llm-api reference for 1.3/1.4). Since ~1.1 the draft checkpoint field is
  ``speculative_model``; 1.0 called it ``speculative_model_dir`` and had no Eagle3DecodingConfig
  (EAGLE-3 went through EagleDecodingConfig). ``adapt_spec_kwargs`` renames for the installed
  release. NGram and draft/target need ``disable_overlap_scheduler=True``.
  MTP's draft length is ``num_nextn_predict_layers``.
* ``async for out in llm.generate_async(prompt_ids, sampling_params, streaming=True)``: each
  ``out.outputs[0].token_ids`` is the whole output so far; ``finish_reason`` is set at the end;
  ``decoding_iter`` / ``avg_decoded_tokens_per_iter`` describe the request's iterations.
* ``llm.get_stats(timeout)`` drains per-iteration stats (JSON strings or dicts, depending on the
  release) with ``specDecodingStats{numDraftTokens, numAcceptedTokens, numRequestsWithDraftTokens,
  acceptanceLength, iterLatencyMS, draftOverhead}`` (cpp/include/tensorrt_llm/executor/types.h).
  The queue is bounded by ``iter_stats_max_iterations``; we raise it and drain on every
  ``counters()`` call so no iteration is lost between before/after snapshots.

TensorRT-LLM reports no per-position acceptance, so ``accepted_per_pos`` stays empty and CAR is
unavailable on this engine. Per request only ``decoding_iter`` exists; it is kept raw in
``spec_raw`` (with the AL it implies) rather than turned into draft counts nobody reported.

A GPU run still has to confirm: that streaming yields one chunk per iteration, that
``numRequestsWithDraftTokens`` summed over iterations equals the number of drafting steps
(AL = 1 + accepted / that), and whether ``decoding_iter`` counts the context (prefill) iteration.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from speedbench_plugin.drafters import DrafterSpec
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

SOURCE = "trtllm:iteration_stats"
# drafter method -> (config class, fallback class for releases without it)
_CLASSES = {
    "eagle3": ("Eagle3DecodingConfig", "EagleDecodingConfig"),
    "eagle": ("EagleDecodingConfig", None),
    "ngram": ("NGramDecodingConfig", None),
    "draft": ("DraftTargetDecodingConfig", None),
    "mtp": ("MTPDecodingConfig", None),
}
_NEEDS_NO_OVERLAP = {"ngram", "draft"}
# Large enough that a benchmark round never overflows the stats queue between two drains.
ITER_STATS_MAX = 100_000
MISSING = (
    "no per-position acceptance in specDecodingStats: per-position rates and CAR come from the stream alone",
    ("no per-request SD counters (only decoding_iter, kept raw): no per-step record, so drafts cut at a "
     "request's end cannot be subtracted"),
)


def spec_config_for(drafter: DrafterSpec) -> tuple[str, dict[str, Any]] | None:
    """(config class name, keyword arguments) for a drafter; None without SD."""
    if not drafter.enabled:
        return None
    cls, _ = _CLASSES[drafter.method]
    if drafter.method == "mtp":
        return cls, {"num_nextn_predict_layers": drafter.k}
    kwargs: dict[str, Any] = {"max_draft_len": drafter.k}
    if drafter.method == "ngram":
        kwargs["max_matching_ngram_size"] = drafter.option("max", drafter.k)
        if drafter.option("min") not in (None, 1):
            raise EngineError("trtllm engine: NGramDecodingConfig has no minimum match size; drop min=")
        return cls, kwargs
    if not drafter.model:
        raise EngineError(f"trtllm engine: drafter {drafter} needs model=PATH (speculative_model)")
    kwargs["speculative_model"] = drafter.model
    return cls, kwargs


def resolve_spec_class(drafter: DrafterSpec, available: Iterable[str]) -> str:
    """The class to use on the installed release (EAGLE-3 fell back to EagleDecodingConfig in 1.0)."""
    available = set(available)
    primary, fallback = _CLASSES[drafter.method]
    if primary in available:
        return primary
    if fallback and fallback in available:
        return fallback
    raise EngineError(f"trtllm engine: this TensorRT-LLM release has no tensorrt_llm.llmapi.{primary}")


def adapt_spec_kwargs(kwargs: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """Rename ``speculative_model`` for releases that call it ``speculative_model_dir``."""
    fields = set(fields)
    out = dict(kwargs)
    if "speculative_model" in out and "speculative_model" not in fields and "speculative_model_dir" in fields:
        out["speculative_model_dir"] = out.pop("speculative_model")
    unknown = sorted(set(out) - fields) if fields else []
    if unknown:
        raise EngineError(f"trtllm engine: the decoding config has no field(s) {', '.join(unknown)}")
    return out


def llm_kwargs(config: EngineConfig) -> dict[str, Any]:
    """``LLM(...)`` keyword arguments other than the speculative config object."""
    kwargs: dict[str, Any] = {
        "model": config.model,
        "enable_iter_perf_stats": True,
        "iter_stats_max_iterations": ITER_STATS_MAX,
    }
    if config.drafter.method in _NEEDS_NO_OVERLAP:
        kwargs["disable_overlap_scheduler"] = True
    kwargs.update(config.engine_args)  # e.g. tensor_parallel_size=8, kv_cache_config, max_batch_size
    return kwargs


def sampling_kwargs(sampling: Sampling) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "ignore_eos": sampling.ignore_eos,
        "detokenize": False,
    }
    if sampling.seed is not None:
        kwargs["seed"] = sampling.seed
    return kwargs


def adapt_sampling_kwargs(kwargs: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    fields = set(fields)
    out = dict(kwargs)
    if "seed" in out and "seed" not in fields and "random_seed" in fields:
        out["random_seed"] = out.pop("seed")
    if "detokenize" in out and "detokenize" not in fields:
        out.pop("detokenize")  # older releases always detokenized; harmless for ids
    return out


def _iteration(entry: Any) -> dict[str, Any] | None:
    if isinstance(entry, str):
        try:
            entry = json.loads(entry)
        except json.JSONDecodeError:
            return None
    return entry if isinstance(entry, dict) else None


def counts_from_iteration_stats(stats: Iterable[Any]) -> SpecCounts | None:
    """Sum ``specDecodingStats`` over iterations; None when no iteration carried them."""
    found = False
    drafts = draft_tokens = accepted = 0
    for entry in stats:
        it = _iteration(entry)
        if it is None:
            continue
        spec = it.get("specDecodingStats") or it.get("spec_decoding_stats")
        if not isinstance(spec, dict):
            continue
        found = True
        draft_tokens += int(spec.get("numDraftTokens", 0) or 0)
        accepted += int(spec.get("numAcceptedTokens", 0) or 0)
        drafts += int(spec.get("numRequestsWithDraftTokens", 0) or 0)
    if not found:
        return None
    return SpecCounts(drafts, draft_tokens, accepted, [], SOURCE)


class CumulativeIds:
    """TensorRT-LLM streams the whole output so far; this yields only the new tokens."""

    def __init__(self) -> None:
        self.seen = 0

    def delta(self, ids: Sequence[int]) -> tuple[int, ...]:
        new = tuple(int(i) for i in ids[self.seen :])
        self.seen = max(self.seen, len(ids))
        return new


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def request_raw(completion: Any, n_tokens: int) -> dict[str, Any] | None:
    """Per-request iteration figures TensorRT-LLM reports, raw, plus the AL they imply."""
    iters = _get(completion, "decoding_iter")
    if not iters:
        return None
    raw: dict[str, Any] = {"decoding_iter": int(iters), "output_tokens": n_tokens}
    avg = _get(completion, "avg_decoded_tokens_per_iter")
    if avg is not None:
        raw["avg_decoded_tokens_per_iter"] = float(avg)
    raw["implied_acceptance_length"] = n_tokens / int(iters)
    return raw


class TRTLLMEngine(Engine):
    name = "trtllm"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._llm: Any = None
        self._totals = SpecCounts(0, 0, 0, [], SOURCE)
        self._seen_stats = False
        self._sampling_fields: set[str] = set()
        self._module: Any = None
        self._spec_class: str | None = None

    @property
    def version(self) -> str:
        try:
            return f"tensorrt_llm=={version('tensorrt_llm')}"
        except PackageNotFoundError:
            module = self._module
            if getattr(module, "__version__", None):
                return f"tensorrt_llm=={module.__version__}"
            return "tensorrt_llm (not installed)"

    @property
    def capabilities(self) -> EngineCapabilities:
        if not self.config.drafter.enabled:
            return EngineCapabilities(missing=MISSING)
        return EngineCapabilities(counter_sources=(SOURCE,), missing=MISSING)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["speculative_config_class"] = self._spec_class
        if self._llm is not None:
            info["resolved_config"] = resolved_config(getattr(self._llm, "args", None))
        return info

    async def start(self) -> None:
        try:
            import tensorrt_llm
            from tensorrt_llm import llmapi
        except ImportError as exc:
            raise EngineError(
                "the trtllm engine needs TensorRT-LLM on a CUDA machine: `pip install tensorrt_llm` "
                f"(import failed: {exc})"
            ) from exc
        self._module = tensorrt_llm
        kwargs = llm_kwargs(self.config)
        spec = spec_config_for(self.config.drafter)
        if spec is not None:
            cls_name = resolve_spec_class(self.config.drafter, dir(llmapi))
            self._spec_class = cls_name
            cls = getattr(llmapi, cls_name)
            fields = getattr(cls, "model_fields", None) or {}
            kwargs["speculative_config"] = cls(**adapt_spec_kwargs(spec[1], fields))
        import dataclasses

        sp = tensorrt_llm.SamplingParams
        self._sampling_fields = {f.name for f in dataclasses.fields(sp)} if dataclasses.is_dataclass(sp) else set()
        try:
            self._llm = await asyncio.to_thread(tensorrt_llm.LLM, **kwargs)
        except Exception as exc:
            raise EngineError(f"TensorRT-LLM failed to start {self.config.model} with {self.config.drafter}: {exc}") from exc

    async def stop(self) -> None:
        if self._llm is not None:
            await asyncio.to_thread(self._llm.shutdown)
            self._llm = None

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        if self._llm is None:
            raise EngineError("trtllm engine: generate() before start()")
        import tensorrt_llm

        kwargs = sampling_kwargs(sampling)
        if self._sampling_fields:
            kwargs = adapt_sampling_kwargs(kwargs, self._sampling_fields)
        params = tensorrt_llm.SamplingParams(**kwargs)
        result = StreamResult(request_id=request_id, prompt_tokens=len(prompt_ids), t_submit=time.perf_counter())
        ids = CumulativeIds()
        completion: Any = None
        async for out in self._llm.generate_async(list(prompt_ids), params, streaming=True):
            t = time.perf_counter()
            completion = out.outputs[0]
            new = ids.delta(completion.token_ids)
            if new:
                result.chunks.append(Chunk(t, new))
        if completion is None:
            raise EngineError(f"trtllm: request {request_id} produced no output")
        result.finish_reason = completion.finish_reason
        result.spec_raw = request_raw(completion, result.output_tokens)
        return result

    async def counters(self) -> SpecCounts | None:
        if not self.config.drafter.enabled or self._llm is None:
            return None
        stats = await asyncio.to_thread(self._llm.get_stats, 2)
        counts = counts_from_iteration_stats(stats)
        if counts is not None:
            self._seen_stats = True
            self._totals = SpecCounts.total([self._totals, counts], SOURCE)
        return self._totals if self._seen_stats else None


# Where each setting lives in the LLM's resolved arguments (``LLM.args``, a pydantic model, dumped).
_RESOLVED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("speculative.decoding_type", ("speculative_config", "decoding_type")),
    ("speculative.max_draft_len", ("speculative_config", "max_draft_len")),
    ("speculative.max_matching_ngram_size", ("speculative_config", "max_matching_ngram_size")),
    ("scheduler.disable_overlap_scheduler", ("disable_overlap_scheduler",)),
    ("scheduler.stream_interval", ("stream_interval",)),
    ("scheduler.max_batch_size", ("max_batch_size",)),
    ("scheduler.max_num_tokens", ("max_num_tokens",)),
    ("model.dtype", ("dtype",)),
    ("model.max_seq_len", ("max_seq_len",)),
    ("cache.enable_block_reuse", ("kv_cache_config", "enable_block_reuse")),
    ("compilation.cuda_graph_config", ("cuda_graph_config",)),
    ("compilation.torch_compile_config", ("torch_compile_config",)),
    ("parallel.tensor_parallel_size", ("tensor_parallel_size",)),
)
_INFORMATIONAL = (("speculative.model", ("speculative_config", "speculative_model_dir")),
                  ("speculative.model", ("speculative_config", "speculative_model")))


def _dig(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, json_safe(data)


def json_safe(value: Any) -> Any:
    """Nested configs (dicts, lists) as JSON values; anything else as text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def resolved_config(args: Any) -> dict[str, Any]:
    """The LLM's resolved arguments (``LLM.args``: a pydantic model, or its dump)."""
    data = args.model_dump() if hasattr(args, "model_dump") else args
    if not isinstance(data, dict):
        return {"source": "trtllm: LLM.args", "comparable": None, "error": "LLM.args is not readable here"}

    def read(table: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, path in table:
            found, value = _dig(data, path)
            if found and key not in out:
                out[key] = value
        return out

    return {"source": "trtllm: LLM.args", "comparable": read(_RESOLVED), "informational": read(_INFORMATIONAL)}
