"""The harness's own cost (``benches/test_harness_cost.py``): a fake engine (FakeEngine, a
synthetic engine, no model) emitting one step to every stream at once on a grid of ``step_s`` —
``streams / step_s`` chunk events per second — and the client stamping them: events per second
achieved, how late each chunk was stamped after its emission, the loop-lag monitor's view and the
client's CPU, with the client in the benchmark process (``host``, how the plugin drives in-process
engines) and in 1 or N worker processes (each with its own fake engine on the shared grid).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from speedbench_plugin import metrics as m
from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, Sampling
from speedbench_plugin.load.clients import ClientPool, WorkerSpec, observed_round
from speedbench_plugin.record import MeasuredRound
from speedbench_plugin.runner import WorkItem

MAX_TOKENS = 64


@dataclass(frozen=True)
class HarnessPoint:
    streams: int
    events_per_s: float
    mode: str  # "host" or "workers"
    processes: int = 1
    loop: str = "auto"
    emission: str = "grid"  # "grid": every stream's step at once; "free": each stream paced from its own last chunk
    max_tokens: int = MAX_TOKENS

    @property
    def step_s(self) -> float:
        return self.streams / self.events_per_s

    @property
    def label(self) -> str:
        where = "host" if self.mode == "host" else f"{self.processes} proc"
        return f"{self.streams} streams, {self.events_per_s / 1000:g}k ev/s, {self.emission}, {where} ({self.loop})"


def measure_point(point: HarnessPoint) -> MeasuredRound:
    config = EngineConfig("fake", DrafterSpec.parse("none"), {"step_s": point.step_s,
                                                                  "step_grid": point.emission == "grid"})
    items = [WorkItem(f"h{i}", "harness", prompt_ids=(1, 2, i)) for i in range(point.streams)]
    sampling = Sampling(point.max_tokens)
    if point.mode == "host":
        from dataclasses import replace

        from speedbench_plugin.engines.fake import FakeEngine
        from speedbench_plugin.runner import EngineHost

        host = EngineHost(FakeEngine(config))
        host.start()
        try:
            measured, observed = host.run(observed_round(host.engine, None, items, sampling, point.streams, 0))
        finally:
            host.close()
        return replace(measured, client={"processes": 1, "workers": [observed]})
    pool = ClientPool(WorkerSpec("fake", config, loop=point.loop), point.processes)
    pool.start()
    try:
        return pool.run_round(items, sampling, point.streams)
    finally:
        pool.close()


def figures(point: HarnessPoint, measured: MeasuredRound) -> dict[str, Any]:
    streams = measured.streams
    if point.emission == "grid":
        lags = [lag for s in streams for lag in m.grid_stamp_lags(s, point.step_s)]
    else:
        lags = [lag for s in streams for lag in m.free_stamp_lags(s, point.step_s)]
    events = sum(len(s.chunks) for s in streams)
    wall = measured.t_end - measured.t_start
    workers = (measured.client or {}).get("workers", [])
    monitor = [lag for w in workers for lag in w.get("loop_lag_s", [])]
    return {
        "streams": point.streams, "target_events_per_s": point.events_per_s, "mode": point.mode,
        "processes": point.processes, "emission": point.emission,
        "loop": "uvloop" if workers and "uvloop" in str(workers[0].get("loop")) else "asyncio", "step_ms": point.step_s * 1e3,
        "completed_streams": len(streams), "chunk_events": events,
        "events_per_s": m.per_second(events, wall),
        "stamp_lag_p50_ms": m.percentile(lags, 50) * 1e3, "stamp_lag_p99_ms": m.percentile(lags, 99) * 1e3,
        "stamp_lag_max_ms": max(lags) * 1e3 if lags else None,
        "monitor_lag_p99_ms": m.percentile(monitor, 99) * 1e3,
        "client_cpu_share": m.cpu_share(measured.cpu_s, wall),
        # CPU time per chunk event (client and fake engine together) and what one process needs to
        # stamp one step's burst at that cost: the floor of the lag of the last stream of a burst.
        "cpu_us_per_event": m.client_cpu_us_per_output(measured.cpu_s, events),
        "burst_ms": m.client_cpu_us_per_output(measured.cpu_s, events) * point.streams / point.processes / 1e3,
        "loop_cpu_share_max": max((m.cpu_share(w["loop_cpu_s"], w["wall_s"]) for w in workers), default=None),
        "load_average": os.getloadavg(),
    }


class HarnessRun:
    """One harness point under pytest-benchmark (one timed round); its figures go to the benchmark's
    ``extra_info`` and the report (``speedbench_harness`` user property) for the summary table."""

    def __init__(self, item: Any, benchmark: Any, settings: Any) -> None:
        self.item, self.benchmark, self.settings = item, benchmark, settings

    def processes(self, clients: str) -> int:
        """``"host"`` and ``"1"``: one; ``"N"``: --speedbench-clients when above 1, else one per core (at least 2)."""
        if clients in ("host", "1"):
            return 1
        return self.settings.clients if self.settings.clients > 1 else max(2, os.cpu_count() or 2)

    def run(self, streams: int, events_per_s: float, clients: str, emission: str = "grid") -> dict[str, Any]:
        from speedbench_plugin.load.settings import HARNESS_PROPERTY

        point = HarnessPoint(streams, events_per_s, "host" if clients == "host" else "workers", self.processes(clients),
                             self.settings.client_loop, emission)
        rounds: list[MeasuredRound] = []
        self.benchmark.group = f"harness:{streams}x{events_per_s / 1000:g}k"
        self.benchmark.pedantic(lambda: rounds.append(measure_point(point)), rounds=1, iterations=1)
        result = figures(point, rounds[-1])
        self.benchmark.extra_info["harness"] = result
        self.item.user_properties.append((HARNESS_PROPERTY, result))
        return result
