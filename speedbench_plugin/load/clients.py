"""The load spread over several client processes, for engines reached over the network.

One Python process stamps every chunk on one event loop; past a few hundred streams the loop wakes
late and the stamps drift (specdec_bench's README concedes it above ~256 streams). ``ClientPool``
starts N worker processes (``spawn``: no state shared with the benchmark process); each builds its
own engine instance from the same :class:`EngineConfig` on its own event loop, runs its share of
the round (every N-th request of the schedule, with the schedule's own send times) through
``runner.run_round``, and sends its ``StreamResult`` s back. All timestamps are ``perf_counter``
readings of one system-wide clock (see :mod:`selfcheck`), checked at start, so the merged round
is on one time line.

A concurrency cap is split evenly over the workers (a global cap would need a cross-process
semaphore on every request's path): each runs at most ``ceil(cap / N)`` conversations at once.
"""
from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from speedbench_plugin.engines.base import EngineConfig, Sampling
from speedbench_plugin.load.selfcheck import (
    DEFAULT_LAG_INTERVAL_S,
    LoopLagMonitor,
    Usage,
    clock_info,
    loop_name,
)
from speedbench_plugin.record import MeasuredRequest, MeasuredRound
from speedbench_plugin.runner import NO_LIMITS, RequestLimits, WorkItem, run_round

START_TIMEOUT_S = 600.0  # an engine's start() in a worker (an HTTP engine: a few requests)
ORIGIN_DELAY_S = 0.05  # the round starts this long after "go" is sent: every worker is waiting by then
LOOPS = ("auto", "asyncio", "uvloop")  # auto: uvloop where installed (it stamps chunks sooner), else asyncio


class ClientError(RuntimeError):
    """A worker process failed to start, lost its clock or died during a round."""


@dataclass(frozen=True)
class WorkerSpec:
    engine: str
    config: EngineConfig
    tokenizer_model: str | None = None  # for conversations given as text (templated in the worker)
    loop: str = "auto"
    lag_interval: float = DEFAULT_LAG_INTERVAL_S


@dataclass(frozen=True)
class RoundOrder:
    items: tuple[WorkItem, ...]
    offsets: tuple[float, ...] | None
    sampling: Sampling
    concurrency: int
    round_index: int


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("uvloop", "auto"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


async def observed_round(engine: Any, tokenizer: Any, items: Sequence[WorkItem], sampling: Sampling, concurrency: int,
                         round_index: int, on_request: Callable[[MeasuredRequest], None] | None = None,
                         offsets: Sequence[float] | None = None, lag_interval: float = DEFAULT_LAG_INTERVAL_S,
                         limits: RequestLimits = NO_LIMITS) -> tuple[MeasuredRound, dict[str, Any]]:
    """``runner.run_round`` watched: the loop-lag monitor runs beside it, the loop thread's and the
    process's CPU time are read around it. Runs on the loop it watches.

    Python's cyclic garbage collector is off during the round (as pytest-benchmark's
    ``--benchmark-disable-gc``): a full collection over a round's chunks stalls the loop for tens of
    milliseconds and every chunk then waiting is stamped that late. Reference counting still frees
    what the round drops; the collector runs again after it."""
    collecting = gc.isenabled()
    gc.disable()
    monitor = LoopLagMonitor(lag_interval)
    monitor.start()
    start = Usage.now()
    try:
        measured = await run_round(engine, tokenizer, items, sampling, concurrency, round_index, on_request,
                                   arrivals=offsets, limits=limits)
    finally:
        usage = Usage.now().since(start)
        lags = await monitor.stop()
        if collecting:
            gc.enable()
    return measured, {"pid": os.getpid(), "loop": loop_name(), "requests": len(measured.requests),
                      "t_start": measured.t_start, **usage, "gc_disabled": collecting,
                      "loop_lag_s": lags, "loop_lag_interval_s": lag_interval}


async def _run_share(engine: Any, tokenizer: Any, order: RoundOrder, origin: float, lag_interval: float
                     ) -> tuple[MeasuredRound, dict[str, Any]]:
    await asyncio.sleep(max(0.0, origin - time.perf_counter()))
    measured, observed = await observed_round(engine, tokenizer, order.items, order.sampling, order.concurrency,
                                              order.round_index, offsets=order.offsets, lag_interval=lag_interval)
    return measured, {**observed, "origin_s": origin}


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """One client process: its own engine instance and event loop; answers the pool's messages."""
    from speedbench_plugin.engines import create_engine

    loop = _new_loop(spec.loop)
    asyncio.set_event_loop(loop)
    tokenizer: Any = None
    try:
        engine = create_engine(spec.engine, spec.config)
        loop.run_until_complete(engine.start())
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", {"pid": os.getpid(), "loop": loop.run_until_complete(_loop_name()), "clock": clock_info()}))
    order: RoundOrder | None = None
    try:
        while True:
            kind, payload = conn.recv()
            if kind == "clock":
                conn.send(("clock", time.perf_counter()))
            elif kind == "prepare":
                order = payload
                if tokenizer is None and spec.tokenizer_model and any(i.prompt_ids is None for i in order.items):
                    from speedbench_plugin.prompts import ChatTokenizer

                    tokenizer = ChatTokenizer(spec.tokenizer_model)
                conn.send(("prepared", None))
            elif kind == "go":
                if order is None:
                    conn.send(("error", "'go' before 'prepare'"))
                    continue
                try:
                    result = loop.run_until_complete(_run_share(engine, tokenizer, order, payload, spec.lag_interval))
                except Exception:  # noqa: BLE001 - the parent fails the case with it
                    conn.send(("error", traceback.format_exc()))
                    continue
                conn.send(("round", result))
                order = None
            elif kind == "stop":
                break
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        loop.run_until_complete(engine.stop())
        loop.close()


async def _loop_name() -> str:
    return loop_name()


class ClientPool:
    """N client worker processes for one engine configuration, kept for the session."""

    def __init__(self, spec: WorkerSpec, processes: int, start_timeout: float = START_TIMEOUT_S) -> None:
        if processes < 1:
            raise ValueError(f"client processes must be positive, got {processes}")
        if spec.loop not in LOOPS:
            raise ValueError(f"client loop must be one of {', '.join(LOOPS)}, got {spec.loop!r}")
        clock = clock_info()
        if processes > 1 and not clock["system_wide"]:
            raise ClientError(f"time.perf_counter is {clock['implementation']} here, not known to be one clock for "
                              "every process: timestamps of several client processes could not be merged")
        self.spec, self.processes, self.start_timeout = spec, processes, start_timeout
        self._workers: list[tuple[Any, Connection]] = []
        self.info: list[dict[str, Any]] = []
        self.clock_checks: list[dict[str, float]] = []

    def _receive(self, conn: Connection, expect: str, timeout: float, worker: int) -> Any:
        if not conn.poll(timeout):
            raise ClientError(f"client worker {worker} sent nothing for {timeout:g} s (waiting for {expect})")
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            raise self._died(worker) from None
        if kind == "error":
            raise ClientError(f"client worker {worker}: {payload}")
        if kind != expect:
            raise ClientError(f"client worker {worker} answered {kind!r}, expected {expect!r}")
        return payload

    def _died(self, worker: int) -> ClientError:
        process = self._workers[worker][0]
        process.join(1)
        return ClientError(f"client worker {worker} (pid {process.pid}) died (exit code {process.exitcode})")

    def _send(self, worker: int, message: tuple[str, Any]) -> None:
        try:
            self._workers[worker][1].send(message)
        except OSError:
            raise self._died(worker) from None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        try:
            for _ in range(self.processes):
                parent, child = context.Pipe()
                process = context.Process(target=worker_main, args=(child, self.spec), daemon=True,
                                          name="speedbench-client")
                process.start()
                child.close()
                self._workers.append((process, parent))
            self.info = [self._receive(conn, "ready", self.start_timeout, i) for i, (_, conn) in enumerate(self._workers)]
            self.clock_checks = [self._check_clock(i) for i in range(self.processes)]
        except BaseException:
            self.close()
            raise

    def _check_clock(self, worker: int) -> dict[str, float]:
        """The worker's clock reading must fall between the parent's send and receive times."""
        sent = time.perf_counter()
        self._send(worker, ("clock", None))
        theirs = self._receive(self._workers[worker][1], "clock", 30, worker)
        back = time.perf_counter()
        if not sent <= theirs <= back:
            raise ClientError(f"client worker {worker}'s perf_counter ({theirs:.6f}) is not between the parent's "
                              f"send ({sent:.6f}) and receive ({back:.6f}): the processes do not share one clock")
        return {"round_trip_s": back - sent}

    def run_round(self, items: Sequence[WorkItem], sampling: Sampling, concurrency: int, round_index: int = 0,
                  offsets: Sequence[float] | None = None,
                  on_request: Callable[[MeasuredRequest], None] | None = None) -> MeasuredRound:
        """The round over every worker: request ``i`` goes to worker ``i mod N``, at its scheduled time."""
        if not self._workers:
            raise ClientError("the client pool is not started")
        if offsets is not None and len(offsets) != len(items):
            raise ValueError(f"{len(offsets)} send times for {len(items)} items")
        n = self.processes
        share_cap = max(1, math.ceil(concurrency / n))
        for w in range(n):
            order = RoundOrder(tuple(items[w::n]), tuple(offsets[w::n]) if offsets is not None else None,
                               sampling, share_cap, round_index)
            self._send(w, ("prepare", order))
        for w, (_, conn) in enumerate(self._workers):
            self._receive(conn, "prepared", 120, w)
        cpu_start = time.process_time()
        origin = time.perf_counter() + ORIGIN_DELAY_S
        for w in range(n):
            self._send(w, ("go", origin))
        shares: list[tuple[MeasuredRound, dict[str, Any]]] = []
        for w, (_, conn) in enumerate(self._workers):
            shares.append(self._receive(conn, "round", 24 * 3600, w))
        parent_cpu = time.process_time() - cpu_start
        return self.merge(shares, parent_cpu, on_request)

    def merge(self, shares: Sequence[tuple[MeasuredRound, dict[str, Any]]], parent_cpu: float,
              on_request: Callable[[MeasuredRequest], None] | None = None) -> MeasuredRound:
        requests = sorted((r for measured, _ in shares for r in measured.requests), key=lambda r: (r.question_id, r.turn))
        if on_request is not None:
            for request in requests:
                on_request(request)
        workers = [obs for _, obs in shares]
        starts = [m.t_start for m, _ in shares]
        client = {
            "processes": self.processes,
            "loop": self.info[0]["loop"] if self.info else None,
            "clock": {**clock_info(), "checks": self.clock_checks},
            "origin_skew_s": max(starts) - min(starts),
            "parent_cpu_s": parent_cpu,
            "workers": workers,
        }
        measured = MeasuredRound(tuple(requests), min(starts), max(m.t_end for m, _ in shares),
                                 sum(w["process_cpu_s"] for w in workers) + parent_cpu, counters=None)
        return replace(measured, client=client)

    def close(self) -> None:
        for process, conn in self._workers:
            try:
                conn.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
        for process, conn in self._workers:
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join(5)
            conn.close()
        self._workers = []
