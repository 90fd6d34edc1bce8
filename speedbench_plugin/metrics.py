"""One definition per metric (see README "Metrics" and REFERENCE §1).

Conventions, chosen once and named wherever they are reported:

* A *step* is one target verification pass of one request. From a stream, every chunk after the
  first is one step (the first chunk is the prefill's token). A step emits ``1 + accepted`` tokens.
* ``acceptance_length`` (AL) pools all decode steps of all requests: decode tokens / decode steps
  (SPEED-Bench, Spec-Bench). Steps in which the drafter proposed nothing count, as they cost a pass.
* vLLM's own AL counts only steps that drafted: ``1 + accepted / drafts``. It is reported as
  ``acceptance_length_drafting_steps`` next to the headline, never instead of it.
* ``per_position`` ``pp[i]`` = share of steps whose draft ``i`` (0-based) was accepted;
  ``conditional`` ``CAR[i] = pp[i] / pp[i-1]`` with ``pp[-1] = 1``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from speedbench_plugin.engines.base import SpecCounts, StreamResult


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


# --- steps as seen in the stream -------------------------------------------------------------


def decode_step_lengths(result: StreamResult) -> list[int]:
    """Tokens emitted per decode step: the sizes of every chunk after the first."""
    return [chunk.n_tokens for chunk in result.chunks[1:] if chunk.n_tokens > 0]


def step_length_histogram(lengths: Iterable[int], k: int) -> list[int]:
    """``hist[j]`` = steps that accepted ``j`` drafts (emitted ``j + 1`` tokens), ``j = 0..k``.

    A step longer than ``k + 1`` tokens means the stream merged steps; it lands in the last bin
    and shows up as a fidelity gap against the engine's counters.
    """
    hist = [0] * (k + 1)
    for length in lengths:
        hist[min(max(length - 1, 0), k)] += 1
    return hist


@dataclass(frozen=True)
class StreamSteps:
    """Decode steps pooled over requests."""

    steps: int
    decode_tokens: int
    histogram: tuple[int, ...]

    @property
    def accepted_tokens(self) -> int:
        return self.decode_tokens - self.steps

    @classmethod
    def pool(cls, results: Sequence[StreamResult], k: int) -> StreamSteps:
        lengths = [n for r in results for n in decode_step_lengths(r)]
        return cls(len(lengths), sum(lengths), tuple(step_length_histogram(lengths, k)))


def acceptance_length(steps: StreamSteps) -> float:
    """AL: decode tokens / decode steps, pooled over every request."""
    return _ratio(steps.decode_tokens, steps.steps)


def acceptance_length_request_mean(results: Sequence[StreamResult]) -> float:
    """Mean over requests of each request's own AL (specdec_bench's averaging, named as such)."""
    per_request = []
    for result in results:
        lengths = decode_step_lengths(result)
        if lengths:
            per_request.append(sum(lengths) / len(lengths))
    return float(np.mean(per_request)) if per_request else math.nan


def per_position_from_histogram(histogram: Sequence[int]) -> list[float]:
    """``pp[i] = P(L >= i + 2)``: share of steps that accepted draft ``i``."""
    total = sum(histogram)
    k = len(histogram) - 1
    return [_ratio(sum(histogram[i + 1 :]), total) for i in range(k)]


def conditional_acceptance(per_position: Sequence[float]) -> list[float]:
    """``CAR[i] = pp[i] / pp[i-1]``: P(draft i accepted | drafts 0..i-1 accepted)."""
    rates, previous = [], 1.0
    for value in per_position:
        rates.append(_ratio(value, previous))
        previous = value
    return rates


# --- the engine's own counters ---------------------------------------------------------------


def acceptance_rate(counts: SpecCounts) -> float:
    """AR: accepted draft tokens / drafted tokens."""
    return _ratio(counts.num_accepted_tokens, counts.num_draft_tokens)


def acceptance_length_drafting_steps(counts: SpecCounts) -> float:
    """vLLM's AL: ``1 + accepted / drafts`` over the steps that drafted."""
    return 1.0 + _ratio(counts.num_accepted_tokens, counts.num_drafts)


def per_position_from_counts(counts: SpecCounts, k: int, steps: int | None = None) -> list[float]:
    """``accepted_per_pos[i] / steps``; ``steps`` defaults to the drafting steps (vLLM's)."""
    denominator = counts.num_drafts if steps is None else steps
    padded = list(counts.accepted_per_pos[:k]) + [0] * max(0, k - len(counts.accepted_per_pos))
    return [_ratio(value, denominator) for value in padded]


def counters_summary(counts: SpecCounts, k: int) -> dict[str, object]:
    per_position = per_position_from_counts(counts, k)
    return {
        **counts.to_dict(),
        "acceptance_length_drafting_steps": acceptance_length_drafting_steps(counts),
        "acceptance_rate": acceptance_rate(counts),
        "per_position_acceptance_rates": per_position,
        "conditional_acceptance_rates": conditional_acceptance(per_position),
    }


def accepted_cut_at_end(result: StreamResult) -> int | None:
    """Drafts the engine accepted in a request's final step but never delivered (max_tokens or a
    stop token fell inside the accepted run), from the engine's per-step record.

    Counted only when that cut alone explains the request's whole gap between counters and stream;
    otherwise 0, so the gap stays visible. None when the engine gives no per-step record.
    """
    per_step = (result.spec_raw or {}).get("per_step_accepted")
    if per_step is None or result.spec is None or len(result.chunks) < 2:
        return None
    last_chunk = result.chunks[-1].n_tokens
    cut = per_step[-1] + 1 - last_chunk if per_step else 0
    stream_accepted = sum(decode_step_lengths(result)) - len(decode_step_lengths(result))
    gap = result.spec.num_accepted_tokens - stream_accepted
    return cut if cut > 0 and gap == cut else 0


def fidelity(steps: StreamSteps, counts: SpecCounts, cut_at_end: int | None = None) -> dict[str, float | None]:
    """Stream against counters on the quantity both measure: accepted draft tokens.

    ``acceptance_length`` puts both on the stream's steps: the stream's ``tokens / steps`` against
    ``1 + counter_accepted / steps``, less the drafts accepted but cut at a request's end (see
    :func:`accepted_cut_at_end`). A merged chunk (two steps in one) moves them apart.
    """
    stream_al = acceptance_length(steps)
    delivered = counts.num_accepted_tokens - (cut_at_end or 0)
    counter_al = 1.0 + _ratio(delivered, steps.steps)
    return {
        "accepted_tokens_stream": steps.accepted_tokens,
        "accepted_tokens_counters": counts.num_accepted_tokens,
        "accepted_cut_at_end": cut_at_end,
        "acceptance_length_stream": stream_al,
        "acceptance_length_counters": counter_al,
        "abs_diff": stream_al - counter_al,
        "rel_diff": _ratio(stream_al - counter_al, counter_al),
        "stream_steps": steps.steps,
        "counter_drafting_steps": counts.num_drafts,
        "steps_without_draft": steps.steps - counts.num_drafts,
    }


# --- timing ----------------------------------------------------------------------------------


def ttft(result: StreamResult) -> float:
    return result.chunks[0].t - result.t_submit if result.chunks else math.nan


def decode_time(result: StreamResult) -> float:
    return result.chunks[-1].t - result.chunks[0].t if len(result.chunks) > 1 else math.nan


def user_tps(result: StreamResult) -> float:
    """Per-request generation speed after the first token: ``(n - 1) / (t_last - t_first)``."""
    return _ratio(result.output_tokens - result.chunks[0].n_tokens, decode_time(result)) if result.chunks else math.nan


def tpot(result: StreamResult) -> float:
    """Time per output token after the first: the inverse of user TPS."""
    return _ratio(decode_time(result), result.output_tokens - result.chunks[0].n_tokens) if result.chunks else math.nan


def step_latencies(result: StreamResult) -> list[float]:
    times = [chunk.t for chunk in result.chunks]
    return [b - a for a, b in pairwise(times)]


def output_tps(results: Sequence[StreamResult]) -> float:
    """All output tokens / (last token time - first submission), over the whole workload."""
    finished = [r for r in results if r.chunks]
    if not finished:
        return math.nan
    start = min(r.t_submit for r in results)
    end = max(r.chunks[-1].t for r in finished)
    return _ratio(sum(r.output_tokens for r in finished), end - start)


def percentile(values: Iterable[float], q: float) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return float(np.percentile(clean, q)) if clean else math.nan
