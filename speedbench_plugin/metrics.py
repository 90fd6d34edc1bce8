"""One definition per metric (docs/concepts/metrics.md explains each one).

Conventions, chosen once and named wherever they are reported:

* A *step* is one target verification pass of one request. A step emits ``1 + accepted`` tokens.
  The prefill emits one token; every later token comes from a decode step.
* From a stream, every chunk is one step (the first chunk is the prefill's token) — unless the
  engine merged steps into one chunk. A chunk longer than ``k + 1`` tokens (``k = 0``: longer than
  one token; a first chunk longer than one token) is certainly a merge and is counted in
  ``merged_chunks``. A merge that stays within ``k + 1`` tokens cannot be seen in the stream.
* ``acceptance_length`` (AL) pools all decode steps of all requests: decode tokens / decode steps
  (SPEED-Bench, Spec-Bench). Steps in which the drafter proposed nothing count, as they cost a pass.
  The steps come from the engine's per-step record where every request has one, otherwise from
  the stream (then merged steps make AL, ``pp`` and ``CAR`` *overstate* acceptance: the record
  says so).
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
from speedbench_plugin.metrics_conventions import (
    AL_CONVENTIONS,
    ends_with_eos,
    output_sha256,
    outputs_sha256,
    request_acceptance_rate,
    request_mean,
    specdec_bench_request_al,
    token_weighted_mean,
    vllm_al,
)

# Each tool's AL lives in metrics_conventions and is reached through here, like every figure. (__all__
# names these re-exports for mypy's strict mode; everything defined below is public as well.)
__all__ = ["AL_CONVENTIONS", "ends_with_eos", "output_sha256", "outputs_sha256", "request_acceptance_rate",
           "request_mean", "specdec_bench_request_al", "token_weighted_mean", "vllm_al"]


def ratio(num: float | None, den: float | None) -> float:
    """``num / den``; NaN when either is missing or the denominator is zero."""
    if num is None or den is None or not den:
        return math.nan
    return num / den


# --- steps as seen in the stream -------------------------------------------------------------


def decode_step_lengths(result: StreamResult) -> list[int]:
    """Tokens per decode step as the stream shows them: every chunk after the first, and the
    first chunk's tokens beyond the prefill's one (a first chunk that merged decode steps)."""
    if not result.chunks:
        return []
    head = result.chunks[0].n_tokens - 1
    lengths = [head] if head > 0 else []
    return lengths + [chunk.n_tokens for chunk in result.chunks[1:] if chunk.n_tokens > 0]


def is_merged(length: int, k: int) -> bool:
    """A decode chunk longer than one step can emit (``k + 1`` tokens) merged several steps."""
    return length > k + 1


def merged_chunks(result: StreamResult, k: int) -> int:
    """Chunks that are certainly several steps: longer than ``k + 1`` decode tokens, or a first
    chunk carrying more than the prefill's token."""
    if not result.chunks:
        return 0
    first = 1 if result.chunks[0].n_tokens > 1 else 0
    return first + sum(1 for chunk in result.chunks[1:] if is_merged(chunk.n_tokens, k))


def step_length_histogram(lengths: Iterable[int], k: int) -> list[int]:
    """``hist[j]`` = steps that accepted ``j`` drafts (emitted ``j + 1`` tokens), ``j = 0..k``.

    A merged chunk (longer than ``k + 1``) lands in the last bin; ``merged_chunks`` counts them.
    """
    hist = [0] * (k + 1)
    for length in lengths:
        hist[min(max(length - 1, 0), k)] += 1
    return hist


@dataclass(frozen=True)
class StreamSteps:
    """Decode steps pooled over requests, as the stream shows them."""

    steps: int
    decode_tokens: int
    histogram: tuple[int, ...]
    merged_chunks: int = 0

    @property
    def accepted_tokens(self) -> int:
        return self.decode_tokens - self.steps

    @classmethod
    def pool(cls, results: Sequence[StreamResult], k: int) -> StreamSteps:
        lengths = [n for r in results for n in decode_step_lengths(r)]
        merged = sum(merged_chunks(r, k) for r in results)
        return cls(len(lengths), sum(lengths), tuple(step_length_histogram(lengths, k)), merged)


# --- steps as the engine recorded them -------------------------------------------------------


def accepted_cut_at_end(result: StreamResult) -> int | None:
    """Drafts the engine accepted in a request's final step but never delivered (max_tokens or a
    stop token fell inside the accepted run), from the engine's per-step record.

    Counted only when that cut alone explains the request's whole gap between counters and stream;
    otherwise 0, so the gap stays visible. None when the engine gives no per-step record.
    """
    record = result.steps
    if record is None or result.spec is None or len(result.chunks) < 2:
        return None
    last_chunk = result.chunks[-1].n_tokens
    cut = record.accepted[-1] + 1 - last_chunk if record.accepted else 0
    lengths = decode_step_lengths(result)
    gap = result.spec.num_accepted_tokens - (sum(lengths) - len(lengths))
    return cut if cut > 0 and gap == cut else 0


def engine_step_histogram(result: StreamResult, k: int) -> list[int] | None:
    """The step histogram from the engine's own per-step record, over every decode step.

    The record lists only the steps that drafted; each step that drafted nothing emitted one token,
    so their number is what the delivered tokens leave over (plus any drafts accepted but cut at
    the end, which the drafting steps' counts include). None without a per-step record.
    """
    record = result.steps
    if record is None:
        return None
    hist = [0] * (k + 1)
    for accepted in record.accepted:
        hist[min(accepted, k)] += 1
    decode_tokens = max(0, result.output_tokens - 1)
    cut = accepted_cut_at_end(result) or 0
    hist[0] += max(0, decode_tokens + cut - sum(a + 1 for a in record.accepted))
    return hist


def histogram_steps(histogram: Sequence[int]) -> int:
    return int(sum(histogram))


def histogram_tokens(histogram: Sequence[int]) -> int:
    """Tokens the steps of a histogram emitted (``j + 1`` per step in bin ``j``)."""
    return int(sum((j + 1) * count for j, count in enumerate(histogram)))


def pool_histograms(histograms: Iterable[Sequence[int]], k: int) -> list[int]:
    total = [0] * (k + 1)
    for hist in histograms:
        for j, count in enumerate(hist):
            total[min(j, k)] += int(count)
    return total


# --- acceptance --------------------------------------------------------------------------------


def acceptance_length(decode_tokens: int, steps: int) -> float:
    """AL: decode tokens / decode steps, pooled over every request."""
    return ratio(decode_tokens, steps)


def acceptance_length_of(steps: StreamSteps) -> float:
    return acceptance_length(steps.decode_tokens, steps.steps)


def acceptance_length_stream_request_mean(results: Sequence[StreamResult]) -> float:
    """Mean over requests of each request's own stream decode AL (decode tokens / decode chunks, the
    prefill's token left out). Not specdec_bench's figure: that one counts the prefill's token as a
    chunk and drops a final EOS (:func:`specdec_bench_request_al`)."""
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
    return [ratio(sum(histogram[i + 1 :]), total) for i in range(k)]


def conditional_acceptance(per_position: Sequence[float]) -> list[float]:
    """``CAR[i] = pp[i] / pp[i-1]``: P(draft i accepted | drafts 0..i-1 accepted)."""
    rates, previous = [], 1.0
    for value in per_position:
        rates.append(ratio(value, previous))
        previous = value
    return rates


def fewest_steps(result: StreamResult, k: int) -> int:
    """The fewest engine steps the stream's chunks can have come from (a chunk of n decode tokens is
    at least ceil(n / (k + 1)) steps): exact without a drafter and for an unmerged stream."""
    return sum(-(-n // (k + 1)) for n in decode_step_lengths(result))


def merge_rate(merged: int, steps: int) -> float:
    """Share of streamed decode chunks that are certainly merged steps."""
    return ratio(merged, steps)


# --- the engine's own counters ---------------------------------------------------------------


def acceptance_rate(counts: SpecCounts) -> float:
    """AR: accepted draft tokens / drafted tokens."""
    return ratio(counts.num_accepted_tokens, counts.num_draft_tokens)


def acceptance_length_drafting_steps(counts: SpecCounts) -> float:
    """vLLM's AL: ``1 + accepted / drafts`` over the steps that drafted."""
    return 1.0 + ratio(counts.num_accepted_tokens, counts.num_drafts)


def per_position_from_counts(counts: SpecCounts, k: int, steps: int | None = None) -> list[float]:
    """``accepted_per_pos[i] / steps``; ``steps`` defaults to the drafting steps (vLLM's)."""
    denominator = counts.num_drafts if steps is None else steps
    padded = list(counts.accepted_per_pos[:k]) + [0] * max(0, k - len(counts.accepted_per_pos))
    return [ratio(value, denominator) for value in padded]


# --- stream against counters -----------------------------------------------------------------

EXACT = "exact"
WITHIN_END_CUT_BOUND = "within the end-cut bound"
MERGED_STEPS = "merged steps"
UNEXPLAINED = "unexplained"


def end_cut_bound(results: Sequence[StreamResult], k: int) -> int:
    """At most ``k`` drafts per request can be accepted but never delivered: those of a request's
    last step, when ``max_tokens`` or a stop token fell inside the accepted run."""
    return k * sum(1 for r in results if r.finish_reason in ("length", "stop"))


@dataclass(frozen=True)
class FidelityCheck:
    """Stream against one counter source, on what both measure: accepted draft tokens."""

    counter_source: str
    accepted_tokens_stream: int
    accepted_tokens_counters: int
    accepted_cut_at_end: int | None  # exact, from the engine's per-step record; None without one
    end_cut_bound: int
    gap: int  # counters - stream - exact cut: what is left to explain
    acceptance_length_stream: float
    acceptance_length_counters: float
    abs_diff: float
    rel_diff: float
    stream_steps: int
    counter_drafting_steps: int
    steps_without_draft: int
    merged_chunks: int
    verdict: str
    explanation: str


def fidelity(steps: StreamSteps, counts: SpecCounts, *, cut_at_end: int | None, bound: int) -> FidelityCheck:
    """Stream against counters on accepted draft tokens.

    ``acceptance_length_*`` put both on the stream's steps: the stream's ``tokens / steps`` against
    ``1 + (counter accepted - exact end cut) / steps``. What explains a gap: drafts accepted in a
    request's last step but cut by ``max_tokens`` (counters > stream, at most ``bound``), and steps
    merged in the stream (stream > counters: the stream saw fewer, longer steps).
    """
    gap = counts.num_accepted_tokens - (cut_at_end or 0) - steps.accepted_tokens
    stream_al = acceptance_length_of(steps)
    counter_al = 1.0 + ratio(counts.num_accepted_tokens - (cut_at_end or 0), steps.steps)
    if gap == 0:
        verdict = EXACT
        why = "stream and counters agree" + (f" after {cut_at_end} drafts cut at requests' ends" if cut_at_end else "")
    elif gap > 0 and cut_at_end is None and gap <= bound:
        verdict = WITHIN_END_CUT_BOUND
        why = (f"counters show {gap} more accepted drafts than the stream delivered; drafts cut by max_tokens or a "
               f"stop at requests' ends explain at most {bound} (no per-step record to count them exactly)")
    elif gap < 0 and steps.merged_chunks:
        verdict = MERGED_STEPS
        why = (f"the stream shows {-gap} more accepted tokens than the engine counted: {steps.merged_chunks} chunks "
               "merged engine steps, so the stream saw fewer, longer steps")
    else:
        verdict = UNEXPLAINED
        bound_text = f"exact end cut {cut_at_end}" if cut_at_end is not None else f"end-cut bound {bound}"
        why = f"counters - stream = {gap} accepted drafts, beyond what explains it ({bound_text}, merged chunks {steps.merged_chunks})"
    return FidelityCheck(
        counter_source=counts.source,
        accepted_tokens_stream=steps.accepted_tokens,
        accepted_tokens_counters=counts.num_accepted_tokens,
        accepted_cut_at_end=cut_at_end,
        end_cut_bound=bound,
        gap=gap,
        acceptance_length_stream=stream_al,
        acceptance_length_counters=counter_al,
        abs_diff=stream_al - counter_al,
        rel_diff=ratio(stream_al - counter_al, counter_al),
        stream_steps=steps.steps,
        counter_drafting_steps=counts.num_drafts,
        steps_without_draft=steps.steps - counts.num_drafts,
        merged_chunks=steps.merged_chunks,
        verdict=verdict,
        explanation=why,
    )


# --- timing ----------------------------------------------------------------------------------


def ttft(result: StreamResult) -> float:
    return result.chunks[0].t - result.t_submit if result.chunks else math.nan


def decode_time(result: StreamResult) -> float:
    return result.chunks[-1].t - result.chunks[0].t if len(result.chunks) > 1 else math.nan


def user_tps(result: StreamResult) -> float:
    """Per-request generation speed after the first token: ``(n - 1) / (t_last - t_first)``."""
    return ratio(result.output_tokens - result.chunks[0].n_tokens, decode_time(result)) if result.chunks else math.nan


def tpot(result: StreamResult) -> float:
    """Time per output token after the first: the inverse of user TPS."""
    return ratio(decode_time(result), result.output_tokens - result.chunks[0].n_tokens) if result.chunks else math.nan


def step_latencies(result: StreamResult, k: int) -> list[float]:
    """Time per engine decode step, one value per step.

    With one chunk per step these are the chunks' inter-arrival times. When the engine's per-step
    record shows more decode steps than chunk intervals (a coalesced stream, where a chunk spans
    several steps), a chunk interval is no step: the request contributes its decode time over its
    engine steps, once per step, so a percentile still weighs steps and compares with a per-step
    stream of the same engine."""
    times = [chunk.t for chunk in result.chunks]
    intervals = [b - a for a, b in pairwise(times)]
    histogram = engine_step_histogram(result, k) if k else None
    steps = histogram_steps(histogram) if histogram is not None else 0
    if steps <= len(intervals):
        return intervals
    return [decode_time(result) / steps] * steps


def output_tps(results: Sequence[StreamResult]) -> float:
    """All output tokens / (last token time - first submission), over the whole workload."""
    finished = [r for r in results if r.chunks]
    if not finished:
        return math.nan
    start = min(r.t_submit for r in results)
    end = max(r.chunks[-1].t for r in finished)
    return ratio(sum(r.output_tokens for r in finished), end - start)


def percentile(values: Iterable[float | None], q: float) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.percentile(clean, q)) if clean else math.nan


def median(values: Iterable[float | None]) -> float:
    return percentile(values, 50)


# --- against a reference -----------------------------------------------------------------------


def speedup(value: float | None, baseline: float | None) -> float:
    """SD throughput over the ``none`` drafter's at the same case and load (SPEED-Bench's speedup)."""
    return ratio(value, baseline)


def proxy_speedup(step_latency_none: float | None, al: float | None, step_latency_sd: float | None) -> float:
    """SPEED-Bench's proxy ``t_ar · AL / t_sd`` (t = median step latency), against the measured speedup."""
    if step_latency_none is None or al is None:
        return math.nan
    return ratio(step_latency_none * al, step_latency_sd)


def harness_efficiency(measured_tps: float | None, ceiling_tps: float | None) -> float:
    """How much of what the engine delivers on its own non-streaming path the suite measured."""
    return ratio(measured_tps, ceiling_tps)


def client_cpu_us_per_output(cpu_s: float | None, outputs: int) -> float:
    """The benchmark process's CPU time per engine step output (one per request per step): what
    bounds how many outputs a second the client can absorb before it becomes the bottleneck."""
    return ratio(None if cpu_s is None else cpu_s * 1e6, outputs)


# --- serving load: open-loop arrivals, SLOs, the load generator's self-check, rate sweeps -------
# (used by speedbench_plugin.load; every load figure is defined here, once)

SLO_KEYS = ("ttft", "tpot", "e2el")


def e2e_latency(result: StreamResult) -> float:
    """End-to-end request latency: last token time − submission (the engine adapter's stamp), as
    vLLM's ``e2el``. A client-side wait for a slot under a concurrency cap is not in it."""
    return result.chunks[-1].t - result.t_submit if result.chunks else math.nan


def send_error(t_scheduled: float | None, t_sent: float | None) -> float:
    """How late the client acted on the arrival schedule for one request (seconds)."""
    return math.nan if t_scheduled is None or t_sent is None else t_sent - t_scheduled


def meets_slo(figures: dict[str, float | None], targets: dict[str, float], failed: bool) -> bool:
    """A request meets its SLOs when it did not fail and every targeted figure is within its limit.
    A figure the request cannot have counts as met only for TPOT of a one-token answer (no decode
    to judge); any other missing figure fails it."""
    if failed:
        return False
    for key, limit in targets.items():
        value = figures.get(key)
        if value is None or math.isnan(value):
            first = figures.get("ttft")
            if key == "tpot" and first is not None and not math.isnan(first):
                continue
            return False
        if value > limit:
            return False
    return True


def share(count: float, total: float) -> float:
    """``count / total`` (e.g. SLO attainment: requests meeting every SLO / all requests)."""
    return ratio(count, total)


def per_second(amount: float, seconds: float) -> float:
    """A count over a wall time: goodput (requests or tokens meeting every SLO) per second, achieved
    request rate."""
    return ratio(amount, seconds)


def cpu_share(cpu_s: float | None, wall_s: float | None) -> float:
    """CPU seconds per wall second: 1.0 is one core kept busy (an asyncio loop cannot use more)."""
    return ratio(cpu_s, wall_s)


def queue_growth(values_in_arrival_order: Sequence[float | None]) -> float:
    """Median of the last third over the median of the first third (requests in arrival order):
    above 1 when queueing grows through the run. NaN with fewer than three values."""
    clean = [v for v in values_in_arrival_order if v is not None and not math.isnan(v)]
    if len(clean) < 3:
        return math.nan
    third = len(clean) // 3
    return ratio(median(clean[-third:]), median(clean[:third]))


def crossing(xs: Sequence[float], ys: Sequence[float], level: float = 0.0) -> tuple[float, str]:
    """Where ``ys`` (against ascending ``xs``) first rises above ``level``, linearly interpolated:
    ``(x, "between")``; ``(xs[0], "below-range")`` when already above at the first x;
    ``(xs[-1], "not-reached")`` when never above; ``(nan, "undefined")`` without two finite points.
    For a rate sweep with ``ys`` = SD latency − no-SD latency this is the crossover rate above which
    SD is slower."""
    points = [(x, y) for x, y in sorted(zip(xs, ys)) if not (math.isnan(x) or math.isnan(y) or math.isinf(x))]
    if len(points) < 2:
        return math.nan, "undefined"
    if points[0][1] > level:
        return points[0][0], "below-range"
    for (x0, y0), (x1, y1) in pairwise(points):
        if y0 <= level < y1:
            return x0 + (level - y0) * (x1 - x0) / (y1 - y0), "between"
    return points[-1][0], "not-reached"


def highest_rate_meeting(rates: Sequence[float], attainment: Sequence[float], target: float) -> tuple[float, str]:
    """The highest sustainable request rate at ``target`` SLO attainment over a rate sweep: walking up
    the finite rates, the first rate that misses the target ends the walk and the rate is
    interpolated linearly between it and the rate below (``"between"``); ``"at-least"`` with the
    highest rate when none misses; ``"below-range"`` with the lowest when even that misses."""
    points = [(r, a) for r, a in sorted(zip(rates, attainment)) if not (math.isnan(a) or math.isinf(r) or math.isnan(r))]
    if not points:
        return math.nan, "undefined"
    if points[0][1] < target:
        return points[0][0], "below-range"
    for (r0, a0), (r1, a1) in pairwise(points):
        if a1 < target:
            return r0 + (a0 - target) * (r1 - r0) / (a0 - a1), "between"
    return points[-1][0], "at-least"


@dataclass(frozen=True)
class DecodeLatencyModel:
    """SmartSpec's fitted step time turned into request latency against request rate (decode only).

    With ``T(C) = a·C·(1 + drafted) + b·C·context + c`` for ``C`` requests in the batch, a request of
    ``n`` output tokens spends ``D(C) = (n − 1) / AL · T(C) = α·C + β`` decoding. Little's law at
    arrival rate λ (``C = λ·D``) gives ``C = λβ / (1 − λα)`` and ``D = β / (1 − λα)``: the latency
    grows without bound as λ approaches ``1/α`` (saturation). Prefill is not modelled (the fit uses
    pure decode steps)."""

    alpha: float  # seconds of decode per request per request in the batch
    beta: float  # seconds of decode per request with an empty batch

    @classmethod
    def of(cls, per_batched_token: float, per_context_token: float, fixed: float, acceptance_length: float,
           drafted_per_step: float, output_tokens: float, context_per_request: float) -> DecodeLatencyModel:
        steps = ratio(output_tokens - 1, acceptance_length)
        per_request = per_batched_token * (1.0 + drafted_per_step) + per_context_token * context_per_request
        return cls(steps * per_request, steps * fixed)

    @property
    def saturation_rate(self) -> float:
        """Requests per second at which the predicted queue grows without bound."""
        return ratio(1.0, self.alpha) if self.alpha > 0 else math.inf

    def latency(self, rate: float) -> float:
        if math.isnan(self.alpha) or math.isnan(self.beta) or self.beta <= 0:
            return math.nan  # a fit without a positive fixed step time predicts nothing
        load = rate * self.alpha
        return math.inf if load >= 1.0 else self.beta / (1.0 - load)


def predicted_crossover(sd: DecodeLatencyModel, plain: DecodeLatencyModel) -> float:
    """The rate where the two predicted latencies are equal (``β_s/(1 − λα_s) = β_n/(1 − λα_n)``);
    NaN when they never cross below both saturation rates."""
    den = plain.beta * sd.alpha - sd.beta * plain.alpha
    if not den:
        return math.nan
    rate = (plain.beta - sd.beta) / den
    if not 0 < rate < min(sd.saturation_rate, plain.saturation_rate):
        return math.nan
    return rate


def grid_stamp_lags(result: StreamResult, step_s: float) -> list[float]:
    """How late each chunk was stamped after its emission, for an engine that emits on a grid of
    ``step_s`` (FakeEngine ``step_grid``): chunk ``j`` is emitted at the first grid point after the
    previous stamp (after submission for the first chunk)."""
    lags, previous = [], result.t_submit
    for chunk in result.chunks:
        due = (math.floor(previous / step_s) + 1) * step_s
        lags.append(chunk.t - due)
        previous = chunk.t
    return lags


def free_stamp_lags(result: StreamResult, step_s: float) -> list[float]:
    """How late each chunk was stamped for an engine that sleeps ``step_s`` after each chunk
    (FakeEngine without ``step_grid``): each gap between stamps beyond ``step_s``."""
    times = [result.t_submit] + [chunk.t for chunk in result.chunks]
    return [b - a - step_s for a, b in pairwise(times)]


def mean(values: Iterable[float | None]) -> float:
    """Arithmetic mean of the defined values (mean request latency, as SmartSpec reports it)."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(clean)) if clean else math.nan


def bounded_ratio(num: tuple[float, str], den: tuple[float, str]) -> tuple[float, str]:
    """The ratio of two sweep results that may be bounds (``highest_rate_meeting``'s kinds):
    ``"exact"`` when both were interpolated, ``"at-least"``/``"at-most"`` when one side is a bound
    that can only move the ratio one way, ``"undefined"`` otherwise."""
    value = ratio(num[0], den[0])
    kinds = (num[1], den[1])
    if kinds == ("between", "between"):
        return value, "exact"
    if kinds in (("at-least", "between"), ("between", "below-range"), ("at-least", "below-range")):
        return value, "at-least"
    if kinds in (("between", "at-least"), ("below-range", "between"), ("below-range", "at-least")):
        return value, "at-most"
    return value, "undefined"


# --- energy and hardware cost (speedbench_plugin.telemetry samples; see README "Energy per token") ---


def value_at(ts: Sequence[float], values: Sequence[float], t: float) -> float:
    """A sampled series at time ``t``, linearly interpolated between the samples around it (the
    nearest sample outside them); NaN without samples."""
    if not ts:
        return math.nan
    return float(np.interp(t, ts, values))


def counter_delta(ts: Sequence[float], values: Sequence[float], t0: float, t1: float) -> float:
    """How much a cumulative counter (CPU seconds, joules) grew from ``t0`` to ``t1``, its samples
    interpolated at both ends: the sampler never stops the measured path to read it. NaN unless
    samples bracket the window."""
    if len(ts) < 2 or ts[0] > t0 or ts[-1] < t1:
        return math.nan
    return value_at(ts, values, t1) - value_at(ts, values, t0)


def integrate(ts: Sequence[float], values: Sequence[float], t0: float, t1: float) -> float:
    """The integral of a sampled gauge over ``[t0, t1]`` (trapezoids; watts -> joules): energy of
    a GPU without a total-energy counter. NaN unless samples bracket the window."""
    if len(ts) < 2 or ts[0] > t0 or ts[-1] < t1 or t1 <= t0:
        return math.nan
    inside = [(t, v) for t, v in zip(ts, values) if t0 < t < t1]
    points = [(t0, value_at(ts, values, t0)), *inside, (t1, value_at(ts, values, t1))]
    return float(sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in pairwise(points)))


def window_values(ts: Sequence[float], values: Sequence[float], t0: float, t1: float) -> list[float]:
    """A gauge's samples inside ``[t0, t1]``; a window shorter than the interval gets the value
    interpolated at its middle."""
    inside = [v for t, v in zip(ts, values) if t0 <= t <= t1]
    return inside or ([value_at(ts, values, (t0 + t1) / 2)] if ts else [])


def per_token(amount: float | None, tokens: int | None) -> float:
    """Joules (or CPU seconds) per token: per output token, or per accepted draft token."""
    return ratio(amount, tokens)


def cost_speedup(cost: float | None, baseline_cost: float | None) -> float:
    """The ``none`` drafter's cost per output token over this case's, at the same case and load:
    above 1 when SD spends less per token (its energy speedup, beside ``speedup``'s time speedup)."""
    return ratio(baseline_cost, cost)
