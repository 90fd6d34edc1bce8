"""The runner's limits on FakeEngine (a synthetic engine, no model): hangs of a chosen length are
what a real engine cannot produce on demand. Each hang is a coroutine that never yields a token
again, or a call that blocks the event loop. Nothing here asserts how fast anything was; the
limits are small so the tests are quick, and a guard keeps each from hanging forever."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, Sampling
from speedbench_plugin.engines.fake import FakeEngine
from speedbench_plugin.runner import EngineHost, EngineHung, RequestLimits, WorkItem, run_round

ITEMS = [WorkItem(f"q{i}", "demo", prompt_ids=tuple(range(5, 12 + i))) for i in range(4)]


@pytest.fixture
def host_for() -> Iterator[Any]:
    hosts: list[EngineHost] = []

    def make(**args: Any) -> EngineHost:
        host = EngineHost(FakeEngine(EngineConfig("fake-model", DrafterSpec.parse("none"), args)))
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close(timeout=10)


def test_a_request_without_tokens_times_out_with_what_streamed(host_for: Any) -> None:
    host = host_for(hang_request="q2", hang_after=3)
    host.start()
    limits = RequestLimits(idle_s=0.5, case="test_x[fake-none-demo]", idle_option="--speedbench-request-timeout")
    measured = host.run(run_round(host.engine, None, ITEMS, Sampling(16), 2, limits=limits), timeout=60)
    by_id = {r.question_id: r.stream for r in measured.requests}
    hung = by_id["q2"]
    assert hung.error == ("case test_x[fake-none-demo], request q2-t0-r0: no token for 0.5 s "
                          "(--speedbench-request-timeout); 3 token(s) had streamed")
    assert hung.output_tokens == 3  # what streamed is kept, not thrown away
    # The other requests of the round are measured in full.
    assert [by_id[q].output_tokens for q in ("q0", "q1", "q3")] == [16, 16, 16]
    assert all(by_id[q].error is None for q in ("q0", "q1", "q3"))


def test_tokens_that_keep_coming_do_not_trip_the_idle_limit(host_for: Any) -> None:
    host = host_for(step_s=0.05)
    host.start()
    limits = RequestLimits(idle_s=2.0)  # 40 steps of 0.05 s take far longer than... nothing: each resets it
    measured = host.run(run_round(host.engine, None, ITEMS[:1], Sampling(40), 1, limits=limits), timeout=60)
    assert measured.requests[0].stream.error is None and measured.requests[0].stream.output_tokens == 40


def test_a_request_past_its_total_limit_fails(host_for: Any) -> None:
    host = host_for(step_s=0.05)
    host.start()
    limits = RequestLimits(total_s=0.3, total_option="--speedbench-request-total-timeout")
    measured = host.run(run_round(host.engine, None, ITEMS[:1], Sampling(200), 1, limits=limits), timeout=60)
    stream = measured.requests[0].stream
    assert stream.error is not None and "not finished after 0.3 s (--speedbench-request-total-timeout)" in stream.error
    assert 0 < stream.output_tokens < 200


def test_a_round_past_its_limit_sends_nothing_more(host_for: Any) -> None:
    host = host_for(step_s=0.02)
    host.start()
    items = [WorkItem(f"q{i}", "demo", prompt_ids=(1, 2, 3)) for i in range(8)]
    limits = RequestLimits(round_s=0.5, round_option="--speedbench-round-timeout 0.5")
    measured = host.run(run_round(host.engine, None, items, Sampling(40), 1, limits=limits), timeout=60)
    assert len(measured.requests) == 8  # every conversation is accounted for
    errors = [r.stream.error for r in measured.requests if r.stream.error]
    not_sent = [e for e in errors if "not sent, the round reached its limit (--speedbench-round-timeout 0.5)" in e]
    assert not_sent  # 8 requests of at least 0.8 s each cannot fit in 0.5 s
    assert all("the round reached its limit" in e for e in errors)
    for request in measured.requests:  # finished ones are whole
        assert request.stream.error is not None or request.stream.output_tokens == 40


def test_an_engine_that_never_starts_is_given_up(host_for: Any) -> None:
    host = host_for(hang_start=True)
    with pytest.raises(EngineHung, match="engine fake start did not finish within 0.5 s"):
        host.start(timeout=0.5)


def test_a_blocked_event_loop_is_noticed(host_for: Any) -> None:
    """A call that blocks the engine's loop (no asyncio timeout can interrupt it): the host's
    heartbeat stops, and the caller is told instead of waiting forever."""
    host = host_for()
    host.start()

    async def blocks() -> None:
        time.sleep(4)  # noqa: ASYNC251 - the fault: a synchronous call inside an async engine

    started = time.monotonic()
    with pytest.raises(EngineHung, match="event loop has not run"):
        host.run(blocks(), stall_s=1.5)
    assert time.monotonic() - started < 60  # a guard against waiting forever, not a speed claim


def test_an_interrupt_cancels_the_round(host_for: Any) -> None:
    """KeyboardInterrupt (what SIGINT and SIGTERM become) in the caller cancels the requests in flight."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # not this session's own handler
    try:
        _interrupt_a_round(host_for)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_a_round(host_for: Any) -> None:
    import _thread
    import threading

    host = host_for(hang_request="q", hang_after=1)
    host.start()
    cancelled = asyncio.Event()

    async def round_then_note() -> None:
        try:
            await run_round(host.engine, None, ITEMS, Sampling(8), 4)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        host.run(round_then_note())
    host.run(asyncio.wait_for(cancelled.wait(), 30))
    assert cancelled.is_set()
