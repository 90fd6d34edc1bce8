"""The per-case record: every figure traceable to the counts it came from.

The record lands in ``benchmark.extra_info["speedbench"]`` and on the test report. ``requests``
keeps per-request raw counts so a baseline can be compared request by request.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from speedbench_plugin import metrics as m
from speedbench_plugin.cache import nan_to_none
from speedbench_plugin.engines.base import SpecCounts
from speedbench_plugin.runner import RoundResult, TurnResult

SCHEMA_VERSION = 1


@dataclass
class CaseInfo:
    case_id: str
    split: str
    engine: str
    engine_version: str
    model: str
    model_sha: str
    drafter: str
    drafter_id: str
    k: int
    concurrency: int
    max_tokens: int
    temperature: float
    labels: dict[str, Any] = field(default_factory=dict)  # category, or bucket and tier


def _request_row(turn: TurnResult, round_index: int, k: int) -> dict[str, Any]:
    stream = turn.stream
    row: dict[str, Any] = {
        "question_id": turn.question_id,
        "turn": turn.turn,
        "round": round_index,
        "error": stream.error,
    }
    if stream.error:
        return row
    steps = m.StreamSteps.pool([stream], k)
    row.update(
        prompt_tokens=stream.prompt_tokens,
        output_tokens=stream.output_tokens,
        steps=steps.steps,
        step_histogram=list(steps.histogram),
        finish_reason=stream.finish_reason,
        ttft_s=m.ttft(stream),
        tpot_s=m.tpot(stream),
        user_tps=m.user_tps(stream),
        decode_time_s=m.decode_time(stream),
        counters=stream.spec.to_dict() if stream.spec else None,
    )
    return row


def engine_counters(rounds: Sequence[RoundResult], k: int, drafting: bool) -> dict[str, Any]:
    """The engine's own counters: cumulative deltas, and the sum of per-request counters."""
    out: dict[str, Any] = {}
    deltas = [r.counters for r in rounds if r.counters is not None]
    if deltas:
        out["global"] = m.counters_summary(SpecCounts.total(deltas, deltas[0].source), k)
    streams = [s for r in rounds for s in r.streams]
    per_request = [s.spec for s in streams if s.spec is not None]
    if per_request and len(per_request) < len(streams):
        # A partial sum would open a false gap against the stream's steps: report it, use none.
        out["per_request_incomplete"] = f"{len(streams) - len(per_request)} of {len(streams)} requests had no counters"
    elif per_request:
        out["per_request"] = m.counters_summary(SpecCounts.total(per_request, per_request[0].source), k)
    if not out:
        reason = "no drafter" if not drafting else "the engine reported no SD counters"
        out = {"available": False, "reason": reason}
    return out


def build_record(case: CaseInfo, rounds: Sequence[RoundResult]) -> dict[str, Any]:
    k = case.k
    streams = [s for r in rounds for s in r.streams]
    steps = m.StreamSteps.pool(streams, k)
    per_position = m.per_position_from_histogram(steps.histogram) if k else []
    round_tps = [m.output_tps(r.streams) for r in rounds]
    user = [m.user_tps(s) for s in streams]
    ttfts = [m.ttft(s) for s in streams]
    step_lat = [lat for s in streams for lat in m.step_latencies(s)]
    counters = engine_counters(rounds, k, case.k > 0)
    # Per-request counters are preferred (they cover exactly the measured requests); the other
    # source, where present, gets its own fidelity record so neither is hidden.
    reference = counters.get("per_request") or counters.get("global")
    cuts = [m.accepted_cut_at_end(s) for s in streams]
    cut_total = None if any(c is None for c in cuts) else sum(c or 0 for c in cuts)

    def fidelity_against(summary: dict[str, Any] | None) -> dict[str, Any]:
        if summary is None or not steps.steps:
            return {"available": False}
        counts = SpecCounts(
            summary["num_drafts"], summary["num_draft_tokens"], summary["num_accepted_tokens"],
            summary["accepted_per_pos"], summary["source"],
        )
        return {"available": True, "counter_source": summary["source"], **m.fidelity(steps, counts, cut_total)}

    fidelity = fidelity_against(reference)
    other = counters.get("global") if reference is counters.get("per_request") else None
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "case_id": case.case_id,
        "split": case.split,
        **case.labels,
        "engine": case.engine,
        "engine_version": case.engine_version,
        "model": case.model,
        "model_sha": case.model_sha,
        "drafter": case.drafter,
        "drafter_id": case.drafter_id,
        "k": k,
        "concurrency": case.concurrency,
        "max_tokens": case.max_tokens,
        "temperature": case.temperature,
        "rounds": len(rounds),
        "num_requests": len(streams),
        "output_tokens": sum(s.output_tokens for s in streams),
        "steps": steps.steps,
        "step_histogram": list(steps.histogram),
        "acceptance_length": m.acceptance_length(steps),
        "acceptance_length_request_mean": m.acceptance_length_request_mean(streams),
        "acceptance_length_drafting_steps": (reference or {}).get("acceptance_length_drafting_steps"),
        "acceptance_rate": (reference or {}).get("acceptance_rate"),
        # Over all decode steps, from the stream (SPEED-Bench's CAR); the engine_counters section
        # has the same rates over drafting steps only (vLLM's convention).
        "per_position_acceptance_rates": per_position,
        "conditional_acceptance_rates": m.conditional_acceptance(per_position),
        "per_position_acceptance_rates_drafting_steps": (reference or {}).get("per_position_acceptance_rates"),
        "conditional_acceptance_rates_drafting_steps": (reference or {}).get("conditional_acceptance_rates"),
        "output_tps": m.percentile(round_tps, 50),
        "output_tps_rounds": round_tps,
        "user_tps_median": m.percentile(user, 50),
        "user_tps_p10": m.percentile(user, 10),
        "user_tps_p90": m.percentile(user, 90),
        "ttft_median_s": m.percentile(ttfts, 50),
        "ttft_p99_s": m.percentile(ttfts, 99),
        "tpot_median_s": m.percentile([m.tpot(s) for s in streams], 50),
        "step_latency_p50_s": m.percentile(step_lat, 50),
        "step_latency_p90_s": m.percentile(step_lat, 90),
        "step_latency_p99_s": m.percentile(step_lat, 99),
        "engine_counters": counters,
        "counter_source": (reference or {}).get("source"),
        "fidelity": fidelity,
        "fidelity_global": fidelity_against(other) if other else {"available": False},
        "merged_chunks": sum(1 for s in streams for n in m.decode_step_lengths(s) if k and n > k + 1),
        "errors": [e for r in rounds for e in r.errors],
        "requests": [_request_row(t, i, k) for i, r in enumerate(rounds) for t in r.turns],
    }
    return nan_to_none(record)
