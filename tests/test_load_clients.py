"""The open-loop runner and the multi-process client, on FakeEngine (a synthetic engine: no model);
fault tests kill a real worker process and fail a real engine start."""
from __future__ import annotations

import asyncio
import os
import signal

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, Sampling
from speedbench_plugin.engines.fake import FakeEngine
from speedbench_plugin.load.clients import ClientError, ClientPool, WorkerSpec
from speedbench_plugin.runner import WorkItem, run_round

ITEMS = [WorkItem(f"q{i:02d}", "demo", prompt_ids=(1, 2, 3 + i)) for i in range(12)]
OFFSETS = [0.0, 0.0, 0.05, 0.1, 0.1, 0.15, 0.2, 0.3, 0.3, 0.35, 0.4, 0.5]
CONFIG = EngineConfig("fake", DrafterSpec.parse("ngram:k=3"), {"step_s": 0.002})


def _round(items, concurrency, offsets):
    async def main():
        engine = FakeEngine(CONFIG)
        await engine.start()
        return await run_round(engine, None, items, Sampling(16), concurrency, arrivals=offsets)

    return asyncio.run(main())


def test_open_loop_sends_on_schedule_and_records_it():
    measured = _round(ITEMS, len(ITEMS), OFFSETS)
    by_id = {r.question_id: r for r in measured.requests}
    for item, offset in zip(ITEMS, OFFSETS):
        request = by_id[item.question_id]
        assert request.t_scheduled == pytest.approx(measured.t_start + offset)
        # never early; the engine's own submission follows the client's send
        assert request.t_scheduled <= request.t_sent <= request.stream.t_submit
    assert measured.t_end - measured.t_start >= max(OFFSETS)


def test_cap_holds_requests_back_without_moving_their_send_time():
    measured = _round(ITEMS, 1, [0.0] * len(ITEMS))
    submits = sorted(r.stream.t_submit for r in measured.requests)
    sends = [r.t_sent for r in measured.requests]
    assert max(sends) - min(sends) < 0.05  # every request was due, and acted on, at the start
    ends = sorted(r.stream.chunks[-1].t for r in measured.requests)
    assert all(s >= e for s, e in zip(submits[1:], ends[:-1]))  # one at a time


def test_closed_loop_is_unchanged():
    measured = _round(ITEMS, 4, None)
    assert all(r.t_scheduled is None and r.t_sent is None for r in measured.requests)
    with pytest.raises(ValueError, match="12 items"):
        _round(ITEMS, 4, [0.0])


@pytest.fixture(scope="module")
def pool():
    pool = ClientPool(WorkerSpec("fake", CONFIG), 2)
    pool.start()
    yield pool
    pool.close()


def test_two_processes_share_the_schedule_on_one_clock(pool):
    assert [check["round_trip_s"] >= 0 for check in pool.clock_checks] == [True, True]
    measured = pool.run_round(ITEMS, Sampling(16), concurrency=12, offsets=OFFSETS)
    assert sorted(r.question_id for r in measured.requests) == [i.question_id for i in ITEMS]
    workers = measured.client["workers"]
    pids = {w["pid"] for w in workers}
    assert len(pids) == 2 and os.getpid() not in pids and sum(w["requests"] for w in workers) == len(ITEMS)
    assert measured.client["clock"]["system_wide"] and measured.client["origin_skew_s"] < 0.05
    by_id = {r.question_id: r for r in measured.requests}
    for item, offset in zip(ITEMS, OFFSETS):
        request = by_id[item.question_id]
        # every worker's timestamps are on the parent's time line: the schedule, then the chunks
        assert request.t_scheduled == pytest.approx(measured.t_start + offset, abs=0.05)
        assert measured.t_start <= request.t_sent <= request.stream.chunks[0].t <= request.stream.chunks[-1].t
        assert request.stream.chunks[-1].t <= measured.t_end
        assert request.stream.spec is not None and request.stream.output_tokens == 16
    assert measured.cpu_s > 0 and all(len(w["loop_lag_s"]) > 0 for w in workers)


def test_a_worker_that_dies_fails_the_round():
    pool = ClientPool(WorkerSpec("fake", CONFIG), 2)
    pool.start()
    try:
        os.kill(pool._workers[1][0].pid, signal.SIGKILL)
        with pytest.raises(ClientError, match="client worker 1"):
            pool.run_round(ITEMS, Sampling(16), concurrency=12, offsets=OFFSETS)
    finally:
        pool.close()


def test_an_engine_that_fails_to_start_in_a_worker_says_why():
    failing = EngineConfig("fake", DrafterSpec.parse("none"), {"fail_start": True})
    pool = ClientPool(WorkerSpec("fake", failing), 2)
    with pytest.raises(ClientError, match="start failure injected"):
        pool.start()
    assert pool._workers == []
