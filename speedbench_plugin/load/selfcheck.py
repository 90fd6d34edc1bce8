"""The load generator checks itself: how late it sent each request against its schedule (on the
requests, see ``runner.run_round``), how late its event loop wakes (a monitor task), how much CPU
its loop and process used, and which clock all of that is on. The ``load`` section turns these
into figures and flags a case client-bound when a threshold is passed.

Clock: every timestamp is ``time.perf_counter()``. On Linux that is ``clock_gettime(CLOCK_MONOTONIC)``,
one system-wide clock, so timestamps taken in several client processes are on one time line; the
multi-process client refuses to run where the clock is not known to be system-wide, and checks the
claim at start (a worker's reading must fall between the parent's send and receive times).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

# Clock implementations that are one clock for every process on the machine.
SYSTEM_WIDE_CLOCKS = ("CLOCK_MONOTONIC", "mach_absolute_time", "mach_continuous_time", "QueryPerformanceCounter")
DEFAULT_LAG_INTERVAL_S = 0.005


def clock_info() -> dict[str, Any]:
    info = time.get_clock_info("perf_counter")
    return {"clock": "time.perf_counter", "implementation": info.implementation,
            "resolution_s": info.resolution,
            "system_wide": any(name in info.implementation for name in SYSTEM_WIDE_CLOCKS)}


class LoopLagMonitor:
    """A task on the watched loop that sleeps ``interval`` again and again and records how late it
    wakes: a chunk that reaches the loop at that moment waits about as long before it is stamped.
    The floor is the selector's timeout granularity (about 1 ms for epoll)."""

    def __init__(self, interval: float = DEFAULT_LAG_INTERVAL_S) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            due = time.perf_counter() + self.interval
            await asyncio.sleep(self.interval)
            self.samples.append(time.perf_counter() - due)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return self.samples


@dataclass(frozen=True)
class Usage:
    """A reading of wall time, the process's CPU time and the calling (loop) thread's CPU time."""

    wall: float
    process_cpu: float
    thread_cpu: float

    @classmethod
    def now(cls) -> Usage:
        return cls(time.perf_counter(), time.process_time(), time.thread_time())

    def since(self, start: Usage) -> dict[str, float]:
        return {"wall_s": self.wall - start.wall, "process_cpu_s": self.process_cpu - start.process_cpu,
                "loop_cpu_s": self.thread_cpu - start.thread_cpu}


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__name__}"


# --- how many client processes an engine can take ------------------------------------------------

NETWORK_ENGINES = {
    "openai": "reached over HTTP: every worker process opens its own connections to the same server, whose counters "
              "cover the requests of all of them",
}
IN_PROCESS_REASONS = {
    "vllm": "vLLM's AsyncLLM runs inside the benchmark process (its engine core is a child of it): another client "
            "process would start another engine with its own model and KV cache, not add load to this one; serve it "
            "(python -m vllm.entrypoints.openai.api_server) and use --speedbench-engine openai to spread the client",
    "hf": "transformers runs the model inside the benchmark process",
    "sglang": "sgl.Engine runs inside the benchmark process; serve it and use --speedbench-engine openai instead",
    "trtllm": "tensorrt_llm.LLM runs inside the benchmark process; serve it (trtllm-serve) and use --speedbench-engine "
              "openai instead",
    "fake": "FakeEngine is a synthetic engine inside the benchmark process; each process would run its own "
            "(benches/test_harness_cost.py drives fake engines in worker processes on purpose)",
}


def client_processes(engine_name: str, engine_cls: type | None = None) -> tuple[int | None, str]:
    """How many client processes can drive one instance of the engine (None: any number) and why.

    An engine class may declare ``max_client_processes`` (None for one reached over the network);
    otherwise the suite's own engines are known by name, and any other engine is taken to run in
    the benchmark process."""
    declared = getattr(engine_cls, "max_client_processes", "undeclared") if engine_cls is not None else "undeclared"
    if declared != "undeclared":
        limit = None if declared is None else int(declared)
        return limit, f"engine {engine_name} declares max_client_processes = {declared}"
    if engine_name in NETWORK_ENGINES:
        return None, NETWORK_ENGINES[engine_name]
    return 1, IN_PROCESS_REASONS.get(
        engine_name, f"engine {engine_name} runs inside the benchmark process as far as speedbench knows (an engine "
                     "class reached over the network can declare max_client_processes = None)")
