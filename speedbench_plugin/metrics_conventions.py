"""Acceptance length as each neighbouring tool reports it, reproduced exactly (re-exported by
:mod:`speedbench_plugin.metrics`; README "Metrics", "AL conventions").

On identical outputs the tools print different ALs because each counts differently:

* **SPEED-Bench / this suite's headline** (``acceptance_length``, in :mod:`.metrics`): decode tokens /
  decode steps pooled over every request; the prefill's token is not a step.
* **specdec_bench** (:func:`specdec_bench_request_al`): per request, from the stream's chunks,
  delivered tokens without a final end-of-sequence token over the number of chunks, where the
  prefill's first token is a chunk of one and a final chunk holding only the EOS is dropped; then
  the unweighted mean over requests (per category; over all requests for its overall figure).
* **vLLM ``bench serve``** (:func:`vllm_al`): ``1 + accepted / drafts`` pooled over the steps that
  drafted (Prometheus counter deltas).
* **AIPerf**: vLLM's per-request ``1 + accepted / drafts``, averaged over requests
  (:func:`request_mean`) and weighted by each request's delivered tokens
  (:func:`token_weighted_mean`). Requests that never drafted have no such AL and are left out.

Nothing here reads a clock or an engine: plain numbers in, one figure out.
"""
from __future__ import annotations

import hashlib
import math
from array import array
from collections.abc import Collection, Iterable, Sequence

# The names the table's --speedbench-al-convention accepts, and the Acceptance field each reads.
AL_CONVENTIONS: dict[str, str] = {
    "speed-bench": "acceptance_length",
    "specdec-bench": "acceptance_length_specdec_bench",
    "vllm": "acceptance_length_vllm_bench",
    "aiperf": "acceptance_length_aiperf_request_mean",
    "aiperf-token-weighted": "acceptance_length_aiperf_token_weighted",
}


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def ends_with_eos(output_ids: Sequence[int], eos_token_ids: Collection[int]) -> bool:
    """Whether the last delivered token is an end-of-sequence token."""
    return bool(output_ids) and output_ids[-1] in eos_token_ids


def specdec_bench_request_al(chunk_tokens: Sequence[int], eos_at_end: bool) -> float:
    """specdec_bench's AL of one request: delivered tokens excluding a final EOS, over the chunks
    (the prefill's first token is a chunk of one; a final chunk that is only the EOS is dropped).
    Empty chunks are not chunks. NaN for a request with no chunk left."""
    chunks = [n for n in chunk_tokens if n > 0]
    tokens = sum(chunks)
    if eos_at_end and chunks:
        tokens -= 1
        if chunks[-1] == 1:
            chunks = chunks[:-1]
    return tokens / len(chunks) if chunks else math.nan


def vllm_al(accepted: int, drafts: int) -> float:
    """vLLM's AL: ``1 + accepted / drafts`` over the steps that drafted; NaN without a drafting step."""
    return 1.0 + accepted / drafts if drafts else math.nan


def request_acceptance_rate(accepted: int, draft_tokens: int) -> float:
    """One request's AR: accepted draft tokens / drafted tokens; NaN when it drafted none."""
    return accepted / draft_tokens if draft_tokens else math.nan


def request_mean(values: Iterable[float | None]) -> float:
    """Unweighted mean over requests of a per-request figure; requests without one (NaN) are left out."""
    clean = _finite(values)
    return sum(clean) / len(clean) if clean else math.nan


def token_weighted_mean(values: Sequence[float | None], tokens: Sequence[int]) -> float:
    """``sum(tokens_r * value_r) / sum(tokens_r)`` over the requests that have a value."""
    pairs = [(float(v), int(n)) for v, n in zip(values, tokens) if v is not None and not math.isnan(v)]
    weight = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / weight if weight else math.nan


# --- output identity -----------------------------------------------------------------------------


def output_sha256(output_ids: Sequence[int]) -> str:
    """sha256 of a request's output token ids (little-endian int32, as the prompt's hash)."""
    return hashlib.sha256(array("i", output_ids).tobytes()).hexdigest()


def outputs_sha256(rows: Iterable[tuple[str, int, int, str | None]]) -> str:
    """One hash over a case's requests: ``(question_id, turn, round, output_sha256)`` sorted, a
    failed request (no output hash) as ``error``. Equal when every request produced the same tokens."""
    lines = sorted(f"{qid}\t{turn}\t{rnd}\t{sha or 'error'}" for qid, turn, rnd, sha in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
