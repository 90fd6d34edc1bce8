"""Harness cost: how fast the harness consumes chunks, and how late it timestamps them, measured on
FakeEngine (a synthetic engine, no model) at concurrency 512. A benchmark: it reports, it asserts
nothing about time."""
from __future__ import annotations

import statistics

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, Sampling
from speedbench_plugin.engines.fake import FakeEngine
from speedbench_plugin.metrics import step_latencies
from speedbench_plugin.runner import EngineHost, WorkItem, run_round

CONCURRENCY = 512
STEP_S = 0.005
MAX_TOKENS = 64


def test_harness_cost(benchmark):
    engine = FakeEngine(EngineConfig("fake", DrafterSpec.parse("ngram:k=3"), {"step_s": STEP_S, "accept": 0.5}))
    host = EngineHost(engine)
    host.start()
    items = [WorkItem(f"q{i}", "fake", prompt_ids=(1, 2, i)) for i in range(CONCURRENCY)]
    rounds = []
    try:
        benchmark.pedantic(
            lambda: rounds.append(host.run(run_round(engine, None, items, Sampling(MAX_TOKENS), CONCURRENCY))),
            rounds=3,
            iterations=1,
        )
    finally:
        host.close()
    last = rounds[-1]
    chunks = sum(len(s.chunks) for s in last.streams)
    wall = last.t_end - last.t_start
    # Each fake step sleeps STEP_S; anything above it is event-loop lag at this concurrency.
    excess = sorted(lat - STEP_S for s in last.streams for lat in step_latencies(s))
    benchmark.extra_info["harness"] = {
        "concurrency": CONCURRENCY,
        "chunk_events": chunks,
        "chunk_events_per_s": chunks / wall,
        "timestamp_skew_median_ms": statistics.median(excess) * 1e3,
        "timestamp_skew_p99_ms": excess[int(0.99 * (len(excess) - 1))] * 1e3,
    }
    print(
        f"\nharness: {chunks} chunks in {wall:.2f}s = {chunks / wall:,.0f} chunk events/s at concurrency "
        f"{CONCURRENCY}; timestamp skew median {statistics.median(excess) * 1e3:.2f} ms, "
        f"p99 {benchmark.extra_info['harness']['timestamp_skew_p99_ms']:.2f} ms"
    )
    assert len(last.streams) == CONCURRENCY
