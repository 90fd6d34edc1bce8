"""Harness cost, measured on FakeEngine (a synthetic engine: no model) at concurrency 512.

* chunk events per second with a zero-latency engine: how many chunks the harness can take in;
* timestamp lag with a paced engine (every step sleeps STEP_S): how late, beyond STEP_S, chunks
  are stamped when 512 streams share the event loop — the error the harness adds to step latency.

A benchmark: it reports, it asserts nothing about time.
"""
from __future__ import annotations

import statistics

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, Sampling
from speedbench_plugin.engines.fake import FakeEngine
from speedbench_plugin.metrics import percentile, step_latencies
from speedbench_plugin.record import MeasuredRound
from speedbench_plugin.runner import EngineHost, WorkItem, run_round

CONCURRENCY = 512
STEP_S = 0.005
MAX_TOKENS = 64
ITEMS = [WorkItem(f"q{i}", "fake", prompt_ids=(1, 2, i)) for i in range(CONCURRENCY)]


def _round(step_s: float) -> MeasuredRound:
    engine = FakeEngine(EngineConfig("fake", DrafterSpec.parse("ngram:k=3"), {"step_s": step_s, "accept": 0.5}))
    host = EngineHost(engine)
    host.start()
    try:
        return host.run(run_round(engine, None, ITEMS, Sampling(MAX_TOKENS), CONCURRENCY))
    finally:
        host.close()


def test_harness_cost(benchmark):
    rounds: list[MeasuredRound] = []
    benchmark.pedantic(lambda: rounds.append(_round(0.0)), rounds=3, iterations=1)
    fastest = max(rounds, key=lambda r: sum(len(s.chunks) for s in r.streams) / (r.t_end - r.t_start))
    chunks = sum(len(s.chunks) for s in fastest.streams)
    events_per_s = chunks / (fastest.t_end - fastest.t_start)
    paced = _round(STEP_S)
    lag_ms = [(lat - STEP_S) * 1e3 for s in paced.streams for lat in step_latencies(s)]
    benchmark.extra_info["harness"] = {
        "concurrency": CONCURRENCY,
        "chunk_events": chunks,
        "chunk_events_per_s": events_per_s,
        "timestamp_lag_median_ms": statistics.median(lag_ms),
        "timestamp_lag_p99_ms": percentile(lag_ms, 99),
    }
    print(
        f"\nharness at concurrency {CONCURRENCY}: {events_per_s:,.0f} chunk events/s (zero-latency fake engine); "
        f"timestamp lag beyond a {STEP_S * 1e3:.0f} ms step: median {statistics.median(lag_ms):.2f} ms, "
        f"p99 {percentile(lag_ms, 99):.2f} ms"
    )
    assert len(fastest.streams) == CONCURRENCY and len(paced.streams) == CONCURRENCY
