"""Records for tests of the code that reads them (analyses, gate, reports), built with the real
record types; only the figures a test cares about are given, the rest are neutral."""
from __future__ import annotations

from typing import Any

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.record import (
    Acceptance,
    CaseKey,
    Counters,
    Record,
    RequestRow,
    Speed,
    session_speedups,
)


def make_record(drafter: str = "ngram:k=3", *, split: str = "throughput", tier: str | None = "mixed",
                bucket: int | None = 1024, category: str | None = None, concurrency: int = 1, engine: str = "fake",
                output_tps: float | None = 10.0, user_tps: float | None = 10.0, step_latency: float | None = 0.05,
                al: float | None = 1.0, histogram: list[int] | None = None, steps: int = 10, rounds: int = 1,
                tp: int = 1, sections: dict[str, Any] | None = None, requests: tuple[RequestRow, ...] = (),
                counters: Counters | None = None, max_tokens: int = 64, model: str = "m", **speed: Any) -> Record:
    spec = DrafterSpec.parse(drafter)
    k = spec.k if spec.enabled else 0
    label = category if category is not None else f"{bucket}-{tier}"
    case = CaseKey(case_id=f"{spec.id}-{label}-{concurrency}", nodeid=f"t::{spec.id}-{label}-{concurrency}", split=split,
                   engine=engine, engine_version="1", model=model, model_sha="sha", model_identity="weights-sha256",
                   drafter=spec, concurrency=concurrency, max_tokens=max_tokens, temperature=0.0, rounds=rounds,
                   category=category, bucket=bucket if category is None else None, tier=tier if category is None else None)
    hist = histogram if histogram is not None else [steps] + [0] * k
    acceptance = Acceptance(
        histogram_source="stream", acceptance_length=al, acceptance_length_stream=al, acceptance_length_stream_request_mean=al,
        acceptance_length_drafting_steps=None, acceptance_rate=None, step_histogram=hist, stream_step_histogram=hist,
        per_position_acceptance_rates=[], conditional_acceptance_rates=[],
        per_position_acceptance_rates_drafting_steps=None, conditional_acceptance_rates_drafting_steps=None,
        steps=sum(hist), step_tokens=sum((j + 1) * c for j, c in enumerate(hist)), stream_steps=sum(hist),
        stream_decode_tokens=sum((j + 1) * c for j, c in enumerate(hist)), output_tokens=max_tokens,
        merged_chunks=0, merge_rate=0.0, stream_merged=False,
    )
    fields: dict[str, Any] = {
        "output_tps": output_tps, "output_tps_rounds": [output_tps] * rounds,
        "output_tps_per_gpu": None if output_tps is None else output_tps / tp, "tensor_parallel_size": tp,
        "user_tps_median": user_tps, "user_tps_p10": user_tps, "user_tps_p90": user_tps, "ttft_median_s": 0.1, "ttft_p99_s": 0.1,
        "tpot_median_s": 0.01, "step_latency_p50_s": step_latency, "step_latency_p90_s": step_latency,
        "step_latency_p99_s": step_latency, "wall_time_s_rounds": [1.0] * rounds, "client_cpu_us_per_output": None,
    }
    fields.update(speed)
    return Record(case=case, engine={"engine": engine}, acceptance=acceptance, speed=Speed(**fields),
                  counters=counters or Counters(None, note="no drafter" if not k else None), fidelity={},
                  errors=(), requests=requests, sections=dict(sections or {}))


def with_speedups(records: list[Record]) -> list[Record]:
    """The session's speedup sections, as the reports plugin adds them."""
    gains = session_speedups(records)
    return [r.with_sections(gains.get(r.case_id, {})) for r in records]
