"""The per-case ``load`` section: what the arrival schedule asked for, what the client did with it
(send-time error, loop lag, CPU: the self-check and its client-bound verdict), SLO attainment and
goodput, saturation, and the decode steps a SmartSpec fit needs. Figures come from
:mod:`speedbench_plugin.metrics`; the raw observations from the rounds (``MeasuredRound.client`` and
each request's scheduled and actual send time)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from speedbench_plugin import metrics as m
from speedbench_plugin.load.settings import LoadSettings, SelfCheckPolicy
from speedbench_plugin.record import MeasuredRound, Record

# Queueing grows when the requests of the last third of the arrivals wait this many times longer for
# their first token than those of the first third; with fewer requests than SATURATION_MIN_REQUESTS
# (three per third) a Poisson cluster alone can do that, and no verdict is given.
SATURATION_GROWTH = 2.0
SATURATION_MIN_REQUESTS = 9


def json_safe(value: Any) -> Any:
    """JSON has no infinity: an infinite figure (a rate of "all at once", a predicted latency past
    saturation) is written as the string "inf", which ``float()`` reads back."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {key: json_safe(val) for key, val in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(val) for val in value]
    return value


def _num(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _spread(values: Sequence[float], scale: float = 1.0) -> dict[str, float | None]:
    return {"p50": _num(m.percentile(values, 50) * scale), "p99": _num(m.percentile(values, 99) * scale),
            "max": _num(max(values) * scale) if values else None}


def request_rows(rounds: Sequence[MeasuredRound], slo: dict[str, float] | None) -> list[dict[str, Any]]:
    rows = []
    for measured in rounds:
        for request in measured.requests:
            stream = request.stream
            failed = stream.error is not None
            ttft, tpot, e2el = m.ttft(stream), m.tpot(stream), m.e2e_latency(stream)
            rows.append({
                "question_id": request.question_id, "turn": request.turn, "round": request.round,
                "scheduled_s": None if request.t_scheduled is None else request.t_scheduled - measured.t_start,
                "send_error_s": _num(m.send_error(request.t_scheduled, request.t_sent)),
                "submit_wait_s": None if request.t_sent is None or failed else _num(stream.t_submit - request.t_sent),
                "e2el_s": _num(e2el),
                "slo_met": m.meets_slo({"ttft": ttft, "tpot": tpot, "e2el": e2el}, slo, failed) if slo else None,
                "_t": request.t_scheduled if request.t_scheduled is not None else stream.t_submit,
                "_ttft": ttft, "_tokens": stream.output_tokens, "_failed": failed,
            })
    return rows


IDLE_LOOP_SHARE = 0.5  # a loop that late yet this idle was not run by the OS: say so


def client_bound(send_error_p99: float | None, loop_lag_p99: float | None, loop_cpu: float | None,
                 policy: SelfCheckPolicy) -> list[str]:
    reasons = []
    if send_error_p99 is not None and send_error_p99 > policy.send_error_s:
        reasons.append(f"p99 send-time error {send_error_p99 * 1e3:.1f} ms > {policy.send_error_s * 1e3:g} ms: the client "
                       "did not send on schedule")
    if loop_lag_p99 is not None and loop_lag_p99 > policy.loop_lag_s:
        reasons.append(f"p99 event-loop lag {loop_lag_p99 * 1e3:.1f} ms > {policy.loop_lag_s * 1e3:g} ms: chunks were "
                       "stamped late")
    if loop_cpu is not None and loop_cpu > policy.loop_cpu:
        reasons.append(f"a client event loop used {loop_cpu:.2f} of a core > {policy.loop_cpu:g}: it could not keep up")
    elif reasons and loop_cpu is not None and loop_cpu < IDLE_LOOP_SHARE:
        reasons.append(f"the loop was mostly idle ({loop_cpu:.2f} of a core), so the OS did not run it in time: other "
                       "processes (the engine's among them) compete for the CPU")
    return reasons


def load_section(record: Record, rounds: Sequence[MeasuredRound], settings: LoadSettings) -> dict[str, Any]:
    from speedbench_plugin.throughput.steps import throughput_section

    observed = [r.client or {} for r in rounds]
    first = observed[0]
    slo = settings.slo
    rows = request_rows(rounds, slo)
    wall = sum(r.t_end - r.t_start for r in rounds)
    completed = [row for row in rows if not row["_failed"]]
    workers = [w for obs in observed for w in obs.get("workers", [])]
    lags = [lag for w in workers for lag in w.get("loop_lag_s", [])]
    send_errors = [row["send_error_s"] for row in rows if row["send_error_s"] is not None]
    submit_waits = [row["submit_wait_s"] for row in rows if row["submit_wait_s"] is not None]
    e2el = [row["e2el_s"] for row in completed if row["e2el_s"] is not None]
    loop_cpu = max((m.cpu_share(w["loop_cpu_s"], w["wall_s"]) for w in workers), default=math.nan)
    send_spread, lag_spread = _spread(send_errors), _spread(lags)
    reasons = client_bound(send_spread["p99"], lag_spread["p99"], _num(loop_cpu), settings.policy)
    pattern = first.get("schedule", {}).get("pattern", {})
    offsets = first.get("schedule", {}).get("offsets_s", [])
    finite = pattern.get("rate") not in (None, "inf")
    by_arrival = sorted(completed, key=lambda row: row["_t"])
    growth = m.queue_growth([row["_ttft"] for row in by_arrival])
    judged = finite and len(by_arrival) >= SATURATION_MIN_REQUESTS and not math.isnan(growth)
    saturated = bool(judged and growth >= SATURATION_GROWTH)
    if saturated:
        note = (f"queueing grows: TTFT ×{growth:.1f} from the first to the last third of the arrivals; the engine "
                "cannot sustain this rate")
    elif finite and not judged:
        note = f"not judged: {len(by_arrival)} completed requests, {SATURATION_MIN_REQUESTS} needed"
    else:
        note = None
    section: dict[str, Any] = {
        "schedule": {**first.get("schedule", {}), "concurrency_cap": first.get("concurrency_cap")},
        "requests": len(rows), "failed": len(rows) - len(completed),
        "offered_rate_per_s": pattern.get("rate") if finite else None,
        "scheduled_rate_per_s": _num(m.per_second(len(offsets) - 1, max(offsets))) if finite and offsets else None,
        "achieved_rate_per_s": _num(m.per_second(len(completed), wall)),
        "wall_s": wall,
        "latency_s": {"mean": _num(m.mean(e2el)),
                      "p50": _num(m.percentile(e2el, 50)), "p90": _num(m.percentile(e2el, 90)),
                      "p99": _num(m.percentile(e2el, 99))},
        "decode_time_mean_s": _num(m.mean(r.decode_time_s for r in record.requests)),
        "send_error_s": send_spread,
        # client acted on the schedule -> the engine adapter's submission stamp: a slot under a cap, or overhead
        "submit_wait_s": _spread(submit_waits) if submit_waits else None,
        "loop_lag_s": {**lag_spread, "samples": len(lags), "interval_s": workers[0].get("loop_lag_interval_s") if workers else None},
        "client_cpu": {"process_share": _num(m.cpu_share(sum(r.cpu_s or 0.0 for r in rounds), wall)),
                       "loop_share_max": _num(loop_cpu)},
        "saturation": {"ttft_growth": _num(growth), "saturated": saturated if judged else None, "note": note},
        "client_bound": {"flag": bool(reasons), "reasons": reasons,
                         "thresholds": {"send_error_p99_s": settings.policy.send_error_s,
                                        "loop_lag_p99_s": settings.policy.loop_lag_s,
                                        "loop_cpu_share": settings.policy.loop_cpu}},
        "clients": {"processes": first.get("processes", 1), "why": settings.client_limit_reason,
                    "loop": workers[0].get("loop") if workers else None, "clock": first.get("clock"),
                    "origin_skew_s": max((obs.get("origin_skew_s") or 0.0 for obs in observed), default=0.0),
                    "workers": [{k: v for k, v in w.items() if k != "loop_lag_s"} for w in workers]},
        "per_request": [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows],
    }
    if slo:
        met = [row for row in rows if row["slo_met"]]
        section["slo"] = {"targets": slo, "met": len(met), "attainment": _num(m.share(len(met), len(rows))),
                          "goodput_rps": _num(m.per_second(len(met), wall)),
                          "goodput_tps": _num(m.per_second(sum(row["_tokens"] for row in met), wall)),
                          "target_attainment": settings.slo_target}
    steps = throughput_section(rounds, record.case.k)
    section["steps"] = {key: steps[key] for key in ("steps_reconstructed", "pure_decode_steps", "decode_steps")}
    return dict(json_safe(section))
