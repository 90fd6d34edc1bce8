"""Wire formats that more than one engine reads, parsed in one place.

* vLLM's per-request ``speculative_decoding`` dict (``RequestSpecDecodeMetrics.to_dict()`` in
  process, ``metrics.speculative_decoding`` over HTTP): the ``vllm`` and ``openai`` engines.
* vLLM's Prometheus counters (``/metrics`` text): the ``openai`` engine, and any tool that scrapes.
* SGLang's streamed outputs and ``meta_info`` (``async_generate`` in process, ``/generate`` over
  HTTP): the ``sglang`` and ``openai`` engines.
* Server-sent events and Prometheus text exposition: every served engine.

Engine modules import from here; no engine module imports another.
"""
from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from speedbench_plugin.engines.base import EngineError, Sampling, SpecCounts, StepRecord, StreamResult

# --- vLLM: per-request speculative-decoding metrics ---------------------------------------------

VLLM_PER_REQUEST = "vllm:per_request"
VLLM_PER_STEP = "vllm:per_request(detailed)"


def vllm_counts_from_spec_dict(spec: dict[str, Any]) -> SpecCounts:
    """vLLM's per-request ``speculative_decoding`` dict → SpecCounts.

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
    try:
        return SpecCounts(
            num_drafts=int(spec["num_spec_steps"]),
            num_draft_tokens=int(spec["num_draft_tokens"]),
            num_accepted_tokens=int(spec["num_accepted_draft_tokens"]),
            accepted_per_pos=per_pos,
            source=VLLM_PER_REQUEST,
        )
    except KeyError as exc:
        raise EngineError(f"vLLM per-request speculative_decoding metrics lack {exc}; got keys {sorted(spec)}") from None


def vllm_steps_from_spec_dict(spec: dict[str, Any]) -> StepRecord | None:
    """The per-step record of vLLM's ``detailed`` level; None at ``summary`` (no per-step lists).

    vLLM leaves both lists out when no step drafted: that request's record is empty at either level.
    """
    accepted = spec.get("per_step_accepted")
    drafted = spec.get("per_step_drafted")
    if accepted is None and drafted is None:
        if int(spec.get("num_spec_steps") or 0) == 0:
            return StepRecord((), (), VLLM_PER_STEP)
        return None
    accepted = [int(a) for a in accepted or []]
    drafted = [int(d) for d in drafted or []]
    if len(accepted) != len(drafted):
        raise EngineError(f"vLLM per-step record: {len(accepted)} accepted entries against {len(drafted)} drafted")
    return StepRecord(tuple(accepted), tuple(drafted), VLLM_PER_STEP)


# --- vLLM: Prometheus counters ------------------------------------------------------------------

VLLM_PROMETHEUS_PREFIX = "vllm:spec_decode_"
VLLM_PROMETHEUS = "vllm:/metrics"


def vllm_counts_from_prometheus(text: str) -> SpecCounts | None:
    """Cumulative vLLM SD counters from ``/metrics`` text, summed over ``engine``/``model_name``
    labels; None when the server exports none."""
    totals = {"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0}
    per_pos: dict[int, int] = {}
    found = False
    for name, labels, value in parse_prometheus(text):
        if not (name.startswith(VLLM_PROMETHEUS_PREFIX) and name.endswith("_total")):
            continue  # skips _created timestamps and any future gauges
        key = name[len(VLLM_PROMETHEUS_PREFIX) : -len("_total")]
        if key == "num_accepted_tokens_per_pos":
            found = True
            pos = int(labels.get("position", -1))
            if pos >= 0:
                per_pos[pos] = per_pos.get(pos, 0) + int(value)
        elif key in totals:
            found = True
            totals[key] += int(value)
    if not found:
        return None
    width = max(per_pos) + 1 if per_pos else 0
    return SpecCounts(accepted_per_pos=[per_pos.get(i, 0) for i in range(width)], source=VLLM_PROMETHEUS, **totals)


VLLM_GENERATION_TOKENS = "vllm:generation_tokens_total"


def vllm_generation_tokens_from_prometheus(text: str) -> int | None:
    """vLLM's cumulative generated-token counter from ``/metrics`` text, summed over its labels;
    None when the server exports none (a replica that decoded without drafting still moves it)."""
    values = [value for name, _labels, value in parse_prometheus(text) if name == VLLM_GENERATION_TOKENS]
    return int(sum(values)) if values else None


# --- SGLang: streamed outputs and meta_info -----------------------------------------------------

SGLANG_META_INFO = "sglang:meta_info"
# SGLang renamed its per-request SD fields over releases; the first name present wins.
SGLANG_ACCEPTED = ("spec_num_correct_drafts", "spec_accepted_drafts", "spec_accept_token_num")
SGLANG_PROPOSED = ("spec_num_proposed_drafts", "spec_proposed_drafts", "spec_draft_token_num")
SGLANG_HISTOGRAM = ("spec_correct_drafts_histogram", "spec_accept_histogram")


def _first(meta: dict[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    for name in names:
        if meta.get(name) is not None:
            return name, meta[name]
    return None, None


def sglang_meta_fields(meta: dict[str, Any]) -> dict[str, str | None]:
    """Which spelling of each SD field a ``meta_info`` carries (None: absent)."""
    return {
        "verify_ct": "spec_verify_ct" if meta.get("spec_verify_ct") is not None else None,
        "accepted": _first(meta, SGLANG_ACCEPTED)[0],
        "proposed": _first(meta, SGLANG_PROPOSED)[0],
        "histogram": _first(meta, SGLANG_HISTOGRAM)[0],
    }


def sglang_counts_from_meta_info(meta: dict[str, Any], k: int | None = None) -> SpecCounts | None:
    """Per-request SpecCounts from a finished chunk's ``meta_info``; None when it has no SD fields.

    ``num_drafts`` = ``spec_verify_ct`` (every SGLang verify step carries a draft).
    ``accepted_per_pos[i]`` comes from the histogram (steps that accepted more than ``i``): a chain
    accepts a prefix. Without a histogram it stays empty rather than guessed.
    """
    verify_ct = meta.get("spec_verify_ct")
    if verify_ct is None:
        return None
    verify_ct = int(verify_ct)
    _, accepted = _first(meta, SGLANG_ACCEPTED)
    _, proposed = _first(meta, SGLANG_PROPOSED)
    _, histogram = _first(meta, SGLANG_HISTOGRAM)
    source = SGLANG_META_INFO
    if accepted is None:
        # Oldest releases: each verify step emits accepted + 1 tokens.
        completion = meta.get("completion_tokens")
        if completion is None or verify_ct == 0:
            return None
        accepted = max(int(completion) - verify_ct, 0)
        source = f"{SGLANG_META_INFO}(derived: completion_tokens - spec_verify_ct)"
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


def sglang_finish_reason(meta: dict[str, Any]) -> str | None:
    reason = meta.get("finish_reason")
    if isinstance(reason, dict):
        return reason.get("type")
    return reason


def sglang_finish(result: StreamResult, meta: dict[str, Any] | None, k: int | None) -> StreamResult:
    """Fill a stream's finish reason and counters from its last ``meta_info``; an abort is an error."""
    if not meta:
        raise EngineError(f"sglang: request {result.request_id} produced no output")
    result.finish_reason = sglang_finish_reason(meta)
    if result.finish_reason == "abort":
        message = meta["finish_reason"].get("message") if isinstance(meta.get("finish_reason"), dict) else None
        raise EngineError(f"sglang: request {result.request_id} aborted: {message or meta.get('finish_reason')}")
    result.spec = sglang_counts_from_meta_info(meta, k)
    if result.spec is not None:
        result.spec_raw = {key: value for key, value in meta.items() if key.startswith("spec_")}
        result.spec_raw["completion_tokens"] = meta.get("completion_tokens")
    return result


def sglang_sampling_params(sampling: Sampling) -> dict[str, Any]:
    """SGLang's ``sampling_params`` (``async_generate`` and ``/generate`` take the same dict)."""
    params: dict[str, Any] = {
        "max_new_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "ignore_eos": sampling.ignore_eos,
    }
    if sampling.temperature > 0 and sampling.seed is not None:
        params["sampling_seed"] = sampling.seed  # per-request seed (SGLang >= 0.5)
    return params


@dataclass
class SGLangOutputs:
    """Turns SGLang's streamed ``output_ids`` (cumulative or incremental) into per-chunk deltas.

    ``output_ids`` is the whole output so far unless the server streams incrementally
    (``incremental_streaming_output``, formerly ``stream_output``); ``meta_info["completion_tokens"]``
    is always cumulative, which tells the two apart when the mode is not known.
    """

    incremental: bool | None = None  # None: decide from meta_info["completion_tokens"]
    ids: list[int] = field(default_factory=list)

    def delta(self, output_ids: Sequence[int], completion_tokens: int | None) -> list[int]:
        output_ids = [int(i) for i in output_ids]
        incremental = self.incremental
        if completion_tokens is not None and self.ids:
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


# --- server-sent events -------------------------------------------------------------------------

SSEEvent = tuple[float, bytes]  # (perf_counter() when the data line reached Python, its payload)


async def iter_sse(reads: AsyncIterator[bytes]) -> AsyncIterator[SSEEvent]:
    """Yield the ``data:`` payloads of a server-sent-event stream, timestamped on arrival.

    ``reads`` are the body's bytes as the socket delivered them (any split). vLLM and SGLang put one
    JSON object on each ``data:`` line and finish with ``data: [DONE]``. Each data line is yielded
    as soon as its line ends, not when the blank separator line follows, stamped with the time of
    the read that completed it: per line the work is a split and a slice, nothing is decoded here.
    (Multi-line data fields, which the SSE spec allows and neither server uses, would arrive as
    separate events and fail JSON parsing loudly rather than silently.)
    """
    rest = b""
    async for data in reads:
        t = time.perf_counter()
        lines = (rest + data if rest else data).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                yield t, line[5:].strip()  # strip: the optional space after the colon, a \r line end
            # else: an event separator, a keep-alive comment or a field speedbench does not use
    if rest.startswith(b"data:"):
        yield time.perf_counter(), rest[5:].strip()


def is_done(data: bytes) -> bool:
    return data == b"[DONE]"


def parse_json_event(data: bytes, url: str) -> dict[str, Any] | None:
    """The event's JSON object; None for ``[DONE]``; a clear error for anything else."""
    if is_done(data):
        return None
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise EngineError(f"{url}: stream sent a non-JSON event: {data[:200]!r}") from None
    if not isinstance(obj, dict):
        raise EngineError(f"{url}: stream sent {type(obj).__name__}, expected a JSON object")
    return obj


class CompletionChoice(msgspec.Struct):
    """What speedbench reads of one choice of a streamed ``/v1/completions`` chunk."""

    token_ids: tuple[int, ...] | None = None  # vLLM with ``return_token_ids``: this chunk's new tokens
    finish_reason: str | None = None


class CompletionChunk(msgspec.Struct):
    """What speedbench reads of one streamed ``/v1/completions`` chunk (vLLM's format); every
    other field (text, logprobs, ids, usage) is skipped by the decoder without building objects."""

    choices: tuple[CompletionChoice, ...] | None = None
    error: Any = None  # vLLM: {"error": {"message": ..., "code": ...}} mid-stream
    metrics: dict[str, Any] | None = None  # vLLM >= 0.29: {"speculative_decoding": {...}} on the usage chunk


_COMPLETION_CHUNK = msgspec.json.Decoder(CompletionChunk)


def completion_chunk(data: bytes, url: str) -> CompletionChunk:
    """One ``data:`` payload of a ``/v1/completions`` stream, typed; a clear error for anything else."""
    try:
        return _COMPLETION_CHUNK.decode(data)
    except msgspec.ValidationError as exc:
        obj = parse_json_event(data, url)  # not JSON, or not an object: that error names it
        raise EngineError(f"{url}: stream sent a chunk that is not a completions chunk ({exc}): "
                          f"{str(obj)[:200]}") from None
    except msgspec.DecodeError:
        raise EngineError(f"{url}: stream sent a non-JSON event: {data[:200]!r}") from None


def completion_error(chunk: CompletionChunk) -> str | None:
    return error_message({"error": chunk.error}) if chunk.error is not None else None


def error_message(obj: dict[str, Any]) -> str | None:
    """The server's error text when a streamed object is an error (vLLM: ``{"error": {...}}``)."""
    err = obj.get("error")
    if err is None:
        return None
    if isinstance(err, dict):
        parts = [str(err.get("message") or err)]
        if err.get("code") is not None:
            parts.append(f"code {err['code']}")
        return ", ".join(parts)
    return str(err)


# --- Prometheus text exposition -----------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value); comments skipped."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        samples.append((name, dict(_LABEL.findall(labels or "")), number))
    return samples


# --- the configuration a server resolved ---------------------------------------------------------

# SGLang's ServerArgs as /get_server_info (HTTP) and Engine.get_server_info() return them: every
# setting that must be equal for two runs to be compared. Only the fields this release reports are kept.
SGLANG_RESOLVED = (
    "speculative_algorithm", "speculative_num_steps", "speculative_eagle_topk", "speculative_num_draft_tokens",
    "speculative_ngram_min_match_window_size", "speculative_ngram_max_match_window_size",
    "disable_overlap_schedule", "stream_interval", "disable_cuda_graph", "enable_torch_compile",
    "max_running_requests", "chunked_prefill_size", "max_prefill_tokens", "dtype", "context_length",
    "disable_radix_cache", "tp_size",
)
SGLANG_INFORMATIONAL = ("speculative_draft_model_path", "version")


def sglang_resolved_config(info: dict[str, Any], source: str) -> dict[str, Any]:
    """``{"source", "comparable", "informational"}`` from an SGLang server-info answer."""
    return {"source": source,
            "comparable": {key: info[key] for key in SGLANG_RESOLVED if key in info},
            "informational": {key: info[key] for key in SGLANG_INFORMATIONAL if key in info}}


def served_model_config(models: dict[str, Any], model_name: str, source: str) -> dict[str, Any]:
    """What an OpenAI-compatible server says about the served model (``/v1/models``): vLLM adds
    ``max_model_len``; ``root`` names what it loaded. Nothing else is exposed there."""
    entry = next((m for m in models.get("data", []) if isinstance(m, dict) and m.get("id") == model_name), {})
    comparable = {"model.max_model_len": entry["max_model_len"]} if "max_model_len" in entry else {}
    return {"source": source, "comparable": comparable,
            "informational": {key: entry[key] for key in ("root", "owned_by") if key in entry}}
