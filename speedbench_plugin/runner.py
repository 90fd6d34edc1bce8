"""Drive a workload through an engine: chat template and tokenization here, token ids to the
engine, multi-turn conversations replayed with the model's own answers, bounded concurrency.

The per-request work on the engine's event loop is kept to what the engine adapter does (one
timestamp and the token ids per chunk); everything else is computed after the round.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from speedbench_plugin.engines.base import Engine, Sampling, SpecCounts, StreamResult
from speedbench_plugin.prompts import ChatTokenizer
from speedbench_plugin.record import MeasuredRequest, MeasuredRound, prompt_sha256

T = TypeVar("T")


class EngineHost:
    """Runs one engine on a private event loop in a background thread for the whole session.

    Async engines (vLLM's AsyncLLM among them) bind to the loop they were started on; pytest runs
    each case synchronously, so every case is submitted to this one loop.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"speedbench-{engine.name}", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def start(self) -> None:
        self.run(self.engine.start())

    def counters(self) -> SpecCounts | None:
        return self.run(self.engine.counters())

    def close(self) -> None:
        try:
            self.run(self.engine.stop(), timeout=120)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


@dataclass(frozen=True)
class WorkItem:
    """One conversation (text turns, templated here) or one ready prompt (token ids, used as is)."""

    question_id: str
    category: str
    turns: tuple[str, ...] = ()
    prompt_ids: tuple[int, ...] | None = None

    @property
    def requests(self) -> int:
        return 1 if self.prompt_ids is not None else max(1, len(self.turns))


async def _run_item(
    engine: Engine,
    tokenizer: ChatTokenizer | None,
    item: WorkItem,
    sampling: Sampling,
    round_index: int,
) -> list[MeasuredRequest]:
    results: list[MeasuredRequest] = []
    turns = 1 if item.prompt_ids is not None else len(item.turns)
    messages: list[dict[str, str]] = []
    for turn in range(turns):
        request_id = f"{item.question_id}-t{turn}-r{round_index}"
        digest = None
        try:
            if item.prompt_ids is None:
                assert tokenizer is not None, "text turns need a tokenizer"
                messages.append({"role": "user", "content": item.turns[turn]})
                prompt_ids: Sequence[int] = tokenizer.encode_chat(messages)
                tokenizer.check_fits(prompt_ids, sampling.max_tokens, f"prompt {item.question_id} turn {turn + 1}")
            else:
                prompt_ids = item.prompt_ids
            digest = prompt_sha256(prompt_ids)
            stream = await engine.generate(prompt_ids, sampling, request_id)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the others
            # An engine may attach what streamed before it failed; keep it for the record.
            stream = getattr(exc, "result", None) or StreamResult(request_id, 0, 0.0)
            stream.error = f"{type(exc).__name__}: {exc}"
            results.append(MeasuredRequest(item.question_id, turn, round_index, digest, stream))
            break  # later turns depend on this answer
        results.append(MeasuredRequest(item.question_id, turn, round_index, digest, stream, tuple(prompt_ids)))
        if item.prompt_ids is None and turn + 1 < turns:
            messages.append({"role": "assistant", "content": tokenizer.decode(stream.output_ids)})  # type: ignore[union-attr]
    return results


async def run_round(
    engine: Engine,
    tokenizer: ChatTokenizer | None,
    items: Sequence[WorkItem],
    sampling: Sampling,
    concurrency: int,
    round_index: int = 0,
    on_request: Callable[[MeasuredRequest], None] | None = None,
    arrivals: Sequence[float] | None = None,
) -> MeasuredRound:
    """Run every item once, at most ``concurrency`` conversations in flight (as specdec_bench).

    ``arrivals`` (open loop): item ``i`` is sent ``arrivals[i]`` seconds after the round starts; the
    concurrency cap still applies (closed loop, every item due at once, when None). A conversation's
    first request records when it was scheduled and when the client acted on it (before any wait
    for a slot under the cap; the engine's own submission time is the stream's ``t_submit``).

    The engine's counters are not read here: a caller snapshots them around the round, outside
    any timed region.
    """
    if arrivals is not None and len(arrivals) != len(items):
        raise ValueError(f"{len(arrivals)} arrival times for {len(items)} items")
    gate = asyncio.Semaphore(concurrency)
    done: list[MeasuredRequest] = []
    t_start = 0.0

    async def one(index: int, item: WorkItem) -> None:
        scheduled: float | None = None
        sent: float | None = None
        if arrivals is not None:
            scheduled = t_start + arrivals[index]
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
        async with gate:
            for request in await _run_item(engine, tokenizer, item, sampling, round_index):
                if scheduled is not None and request.turn == 0:
                    request = dataclasses.replace(request, t_scheduled=scheduled, t_sent=sent)
                done.append(request)
                if on_request is not None:
                    on_request(request)

    cpu_start, t_start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    t_end, cpu_end = time.perf_counter(), time.process_time()
    done.sort(key=lambda r: (r.question_id, r.turn))
    return MeasuredRound(tuple(done), t_start, t_end, cpu_end - cpu_start, counters=None)
