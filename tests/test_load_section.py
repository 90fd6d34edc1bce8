"""The per-case ``load`` section from measured rounds with known timings (real record types, streams
built by hand): saturation, SLO goodput, the client-bound verdict and its reasons."""
from __future__ import annotations

import pytest
from recordkit import make_record

from speedbench_plugin.engines.base import Chunk, StreamResult
from speedbench_plugin.load.schedule import ArrivalPattern
from speedbench_plugin.load.section import load_section
from speedbench_plugin.load.settings import LoadSettings, SelfCheckPolicy
from speedbench_plugin.record import MeasuredRequest, MeasuredRound


def _round(ttfts: list[float], lags: list[float], loop_cpu: float = 0.1, send_late: float = 0.001) -> MeasuredRound:
    pattern = ArrivalPattern(1.0)
    offsets = [float(i) for i in range(len(ttfts))]
    requests = []
    for i, (offset, ttft) in enumerate(zip(offsets, ttfts)):
        submit = 100.0 + offset + send_late
        chunks = [Chunk(submit + ttft + 0.05 * j, (j,)) for j in range(4)]
        stream = StreamResult(f"q{i}", 10, submit, chunks, finish_reason="length")
        requests.append(MeasuredRequest(f"q{i}", 0, 0, None, stream, t_scheduled=100.0 + offset,
                                        t_sent=100.0 + offset + send_late))
    wall = len(ttfts) + max(ttfts) + 1.0
    worker = {"pid": 1, "loop": "asyncio", "requests": len(ttfts), "wall_s": wall, "process_cpu_s": loop_cpu * wall,
              "loop_cpu_s": loop_cpu * wall, "loop_lag_s": lags, "loop_lag_interval_s": 0.005}
    client = {"processes": 1, "workers": [worker], "clock": {"implementation": "test"},
              "schedule": {"pattern": pattern.to_json(), "offsets_s": offsets}, "concurrency_cap": None}
    return MeasuredRound(tuple(requests), 100.0, 100.0 + wall, loop_cpu * wall, None, client=client)


SETTINGS = LoadSettings(rates=(1.0,), slo={"ttft": 1.0, "e2el": 1.5}, policy=SelfCheckPolicy(0.01, 0.01, 0.9))


def test_saturation_needs_enough_requests_and_growing_queues():
    record = make_record("none", split="load")
    growing = load_section(record, [_round([0.2, 0.2, 0.2, 0.5, 0.6, 0.7, 1.0, 1.2, 1.4], [0.001] * 50)], SETTINGS)
    assert growing["saturation"]["saturated"] is True and growing["saturation"]["ttft_growth"] == pytest.approx(6.0)
    steady = load_section(record, [_round([0.2] * 9, [0.001] * 50)], SETTINGS)
    assert steady["saturation"]["saturated"] is False
    few = load_section(record, [_round([0.2, 0.2, 1.0, 1.2, 1.4, 1.6], [0.001] * 50)], SETTINGS)
    assert few["saturation"]["saturated"] is None and "6 completed requests, 9 needed" in few["saturation"]["note"]


def test_slo_goodput_and_schedule_figures():
    section = load_section(make_record("none", split="load"), [_round([0.2, 0.5, 1.2, 0.3], [0.001] * 50)], SETTINGS)
    # e2el = ttft + 3 × 50 ms: 0.35, 0.65, 1.35, 0.45 -> the third misses ttft ≤ 1
    assert [row["slo_met"] for row in section["per_request"]] == [True, True, False, True]
    assert section["slo"]["attainment"] == 0.75 and section["slo"]["goodput_rps"] == pytest.approx(3 / section["wall_s"])
    assert section["slo"]["goodput_tps"] == pytest.approx(12 / section["wall_s"])
    assert section["latency_s"]["mean"] == pytest.approx((0.35 + 0.65 + 1.35 + 0.45) / 4)
    assert section["scheduled_rate_per_s"] == pytest.approx(3 / 3.0)
    assert [row["scheduled_s"] for row in section["per_request"]] == [0.0, 1.0, 2.0, 3.0]
    assert all(row["send_error_s"] == pytest.approx(0.001) for row in section["per_request"])
    assert section["client_bound"] == {"flag": False, "reasons": [], "thresholds": {
        "send_error_p99_s": 0.01, "loop_lag_p99_s": 0.01, "loop_cpu_share": 0.9}}


def test_client_bound_reasons():
    late = load_section(make_record("none", split="load"), [_round([0.2] * 4, [0.001] * 40 + [0.05] * 10,
                                                                    send_late=0.02)], SETTINGS)
    reasons = late["client_bound"]["reasons"]
    assert late["client_bound"]["flag"] and len(reasons) == 3
    assert reasons[0].startswith("p99 send-time error 20.0 ms > 10 ms")
    assert reasons[1].startswith("p99 event-loop lag 50.0 ms > 10 ms")
    assert "the OS did not run it in time" in reasons[2]  # late, yet the loop was idle
    busy = load_section(make_record("none", split="load"), [_round([0.2] * 4, [0.001] * 50, loop_cpu=0.95)], SETTINGS)
    assert busy["client_bound"]["reasons"] == ["a client event loop used 0.95 of a core > 0.9: it could not keep up"]
