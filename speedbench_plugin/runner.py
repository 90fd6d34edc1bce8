"""Drive a workload through an engine: chat template and tokenization here, token ids to the
engine, multi-turn conversations replayed with the model's own answers (or fixed ones, see
:mod:`speedbench_plugin.multiturn`), bounded concurrency.

The per-request work on the engine's event loop is kept to what the engine adapter does (one
timestamp and the token ids per chunk); everything else is computed after the round.

Limits (:class:`RequestLimits`) bound what a fault can cost: a request that goes too long without a
token, or takes too long in all, is cancelled and recorded as an error with what had streamed; a
round past its limit sends no new request; a request that provably never started is sent again a
bounded number of times. The watchdog wakes only at those deadlines, never per chunk.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from speedbench_plugin.engines.base import (
    WATCHED_STREAMS,
    Engine,
    EngineError,
    RequestNotStarted,
    Sampling,
    SpecCounts,
    StreamResult,
)
from speedbench_plugin.multiturn import Replay
from speedbench_plugin.prompts import ChatTokenizer
from speedbench_plugin.record import MeasuredRequest, MeasuredRound, prompt_sha256

T = TypeVar("T")


class EngineHung(EngineError):
    """The engine did not finish a call within its limit, or its event loop stopped running."""


HEARTBEAT_S = 1.0  # how often the engine's event loop proves it still runs


class EngineHost:
    """Runs one engine on a private event loop in a background thread for the whole session.

    Async engines (vLLM's AsyncLLM among them) bind to the loop they were started on; pytest runs
    each case synchronously, so every case is submitted to this one loop. A heartbeat on the loop
    tells a slow engine from a blocked loop (a call that never yields), which no asyncio timeout
    can interrupt.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loop = asyncio.new_event_loop()
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"speedbench-{engine.name}", daemon=True)
        self._thread.start()
        self._loop.call_soon_threadsafe(self._heartbeat)

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        self._loop.call_later(HEARTBEAT_S, self._heartbeat)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None, stall_s: float | None = None,
            what: str = "the engine") -> T:
        """Run ``coro`` on the engine's loop. ``timeout``: the whole call's limit; ``stall_s``: how long
        the loop may go without running at all. Past either, the call is cancelled and
        :class:`EngineHung` raised; an interrupt (Ctrl-C, SIGTERM) cancels it too."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        deadline = time.monotonic() + timeout if timeout else None
        try:
            while True:
                wait = HEARTBEAT_S if deadline is None else max(0.0, min(HEARTBEAT_S, deadline - time.monotonic()))
                try:
                    return future.result(wait)
                except concurrent.futures.TimeoutError:
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        raise EngineHung(f"{what} did not finish within {timeout:g} s") from None
                    if stall_s and now - self._beat > stall_s:
                        raise EngineHung(f"{what}: the engine's event loop has not run for {now - self._beat:.0f} s "
                                         "(a call inside the engine blocks it)") from None
        except BaseException:
            future.cancel()
            raise

    @property
    def responsive(self) -> bool:
        """Whether the engine's loop ran within the last few heartbeats."""
        return time.monotonic() - self._beat < 5 * HEARTBEAT_S

    def start(self, timeout: float | None = None) -> None:
        self.run(self.engine.start(), timeout=timeout, what=f"engine {self.engine.name} start")

    def counters(self, timeout: float | None = None) -> SpecCounts | None:
        return self.run(self.engine.counters(), timeout=timeout, what=f"engine {self.engine.name} counters")

    def close(self, timeout: float = 120) -> None:
        try:
            # A blocked loop cannot run stop(): do not wait the full limit for it.
            self.run(self.engine.stop(), timeout=timeout if self.responsive else min(timeout, 5),
                     what=f"engine {self.engine.name} stop")
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


@dataclass(frozen=True)
class WorkItem:
    """One conversation (text turns, templated here) or one ready prompt (token ids, used as is).

    ``replay``: fixed assistant answers put between the user turns instead of the engine's own
    (``--speedbench-multiturn reference``), so every engine gets the same later-turn prompts.
    """

    question_id: str
    category: str
    turns: tuple[str, ...] = ()
    prompt_ids: tuple[int, ...] | None = None
    replay: Replay | None = None

    @property
    def requests(self) -> int:
        return 1 if self.prompt_ids is not None else max(1, len(self.turns))


class RequestFailed(EngineError):
    """A request the runner gave up on; ``result`` holds what had streamed."""

    def __init__(self, message: str, result: StreamResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class RequestLimits:
    """What one request and one round may cost. ``None`` or 0: no limit. ``case`` and the option
    names go into messages, so an error says which case, which request and which limit."""

    idle_s: float | None = None  # no new token (the first included) for this long
    total_s: float | None = None  # the whole request
    round_s: float | None = None  # the whole round: later requests are not sent
    retries: int = 0  # re-sends of a request that provably never started
    retry_wait_s: float = 1.0  # the first wait when the server names none; doubles each time
    retry_wait_max_s: float = 30.0  # a longer Retry-After is cut to this
    case: str = ""
    idle_option: str = "idle limit"
    total_option: str = "total limit"
    round_option: str = "round limit"


NO_LIMITS = RequestLimits()
CANCEL_GRACE_S = 10.0  # how long a cancelled request may take to unwind (vLLM aborts it)


def _where(limits: RequestLimits, request_id: str) -> str:
    return f"case {limits.case}, request {request_id}" if limits.case else f"request {request_id}"


async def _watched(engine: Engine, prompt_ids: Sequence[int], sampling: Sampling, request_id: str,
                   limits: RequestLimits, round_deadline: float | None) -> StreamResult:
    """``engine.generate`` under the limits; a request past one is cancelled and raises
    :class:`RequestFailed` with what had streamed, as does any engine error."""
    streams: list[StreamResult] = []
    token = WATCHED_STREAMS.set(streams)
    try:
        task = asyncio.ensure_future(engine.generate(prompt_ids, sampling, request_id))  # copies the context
    finally:
        WATCHED_STREAMS.reset(token)
    t0 = time.perf_counter()

    def partial() -> StreamResult:
        return streams[-1] if streams else StreamResult(request_id, len(prompt_ids), t0)

    def next_deadline() -> tuple[float, str] | None:
        stream = partial()
        last_token = stream.chunks[-1].t if stream.chunks else t0
        deadlines = []
        if limits.idle_s:
            deadlines.append((max(last_token, t0) + limits.idle_s, f"no token for {limits.idle_s:g} s ({limits.idle_option})"))
        if limits.total_s:
            deadlines.append((t0 + limits.total_s, f"not finished after {limits.total_s:g} s ({limits.total_option})"))
        if round_deadline is not None:
            deadlines.append((round_deadline, f"the round reached its limit ({limits.round_option})"))
        return min(deadlines) if deadlines else None

    try:
        while not task.done():
            upcoming = next_deadline()
            await asyncio.wait({task}, timeout=None if upcoming is None else max(0.0, upcoming[0] - time.perf_counter()))
            upcoming = next_deadline()  # a token that arrived meanwhile moves the idle deadline on
            if not task.done() and upcoming is not None and time.perf_counter() >= upcoming[0]:
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
                result = partial()
                raise RequestFailed(f"{_where(limits, request_id)}: {upcoming[1]}; {result.output_tokens} token(s) "
                                    "had streamed", result)
    except asyncio.CancelledError:
        task.cancel()  # the round was cancelled (an interrupt): the engine's request goes too
        raise
    try:
        result = task.result()
    except asyncio.CancelledError:
        raise RequestFailed(f"{_where(limits, request_id)}: cancelled", partial()) from None
    except Exception as exc:
        # An engine may attach what streamed before it failed; else the watched stream has it.
        result = getattr(exc, "result", None) or partial()
        raise RequestFailed(f"{type(exc).__name__}: {exc}", result) from exc
    if result.output_tokens > sampling.max_tokens:
        raise RequestFailed(f"{_where(limits, request_id)}: the engine sent {result.output_tokens} tokens, "
                            f"{sampling.max_tokens} were asked (max_tokens)", result)
    return result


async def _send(engine: Engine, prompt_ids: Sequence[int], sampling: Sampling, request_id: str,
                limits: RequestLimits, round_deadline: float | None) -> StreamResult:
    """One request, sent again (at most ``limits.retries`` times) only when it provably never started."""
    attempt = 0
    while True:
        try:
            return await _watched(engine, prompt_ids, sampling, request_id, limits, round_deadline)
        except RequestFailed as failed:
            cause = failed.__cause__
            if not isinstance(cause, RequestNotStarted) or attempt >= limits.retries:
                if isinstance(cause, RequestNotStarted) and attempt:
                    raise RequestFailed(f"{failed} (gave up after {attempt + 1} attempts)", failed.result) from cause
                raise
            wait = cause.retry_after if cause.retry_after is not None else limits.retry_wait_s * 2**attempt
            wait = min(max(wait, 0.0), limits.retry_wait_max_s)
            if round_deadline is not None and time.perf_counter() + wait >= round_deadline:
                raise
            await asyncio.sleep(wait)
            attempt += 1


def _not_sent(item: WorkItem, round_index: int, limits: RequestLimits) -> MeasuredRequest:
    request_id = f"{item.question_id}-t0-r{round_index}"
    stream = StreamResult(request_id, 0, time.perf_counter())
    stream.error = (f"RequestFailed: {_where(limits, request_id)}: not sent, the round reached its limit "
                    f"({limits.round_option})")
    return MeasuredRequest(item.question_id, 0, round_index, None, stream)


async def _run_item(
    engine: Engine,
    tokenizer: ChatTokenizer | None,
    item: WorkItem,
    sampling: Sampling,
    round_index: int,
    limits: RequestLimits = NO_LIMITS,
    round_deadline: float | None = None,
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
            stream = await _send(engine, prompt_ids, sampling, request_id, limits, round_deadline)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the others
            stream = getattr(exc, "result", None) or StreamResult(request_id, 0, 0.0)
            stream.error = str(exc) if isinstance(exc, RequestFailed) else f"{type(exc).__name__}: {exc}"
            results.append(MeasuredRequest(item.question_id, turn, round_index, digest, stream))
            break  # later turns depend on this answer
        results.append(MeasuredRequest(item.question_id, turn, round_index, digest, stream, tuple(prompt_ids)))
        if item.prompt_ids is None and turn + 1 < turns:
            answer = item.replay.answers[turn] if item.replay else tokenizer.decode(stream.output_ids)  # type: ignore[union-attr]
            messages.append({"role": "assistant", "content": answer})
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
    limits: RequestLimits = NO_LIMITS,
) -> MeasuredRound:
    """Run every item once, at most ``concurrency`` conversations in flight (as specdec_bench).

    ``arrivals`` (open loop): item ``i`` is sent ``arrivals[i]`` seconds after the round starts; the
    concurrency cap still applies (closed loop, every item due at once, when None). A conversation's
    first request records when it was scheduled and when the client acted on it (before any wait
    for a slot under the cap; the engine's own submission time is the stream's ``t_submit``).

    The engine's counters are not read here: a caller snapshots them around the round, outside
    any timed region. Under ``limits.round_s`` a conversation not started by then is recorded as
    not sent, and requests still running are cancelled with what they had streamed.
    """
    if arrivals is not None and len(arrivals) != len(items):
        raise ValueError(f"{len(arrivals)} arrival times for {len(items)} items")
    gate = asyncio.Semaphore(concurrency)
    done: list[MeasuredRequest] = []
    t_start = 0.0
    round_deadline = time.perf_counter() + limits.round_s if limits.round_s else None

    async def one(index: int, item: WorkItem) -> None:
        scheduled: float | None = None
        sent: float | None = None
        if arrivals is not None:
            scheduled = t_start + arrivals[index]
            wake = scheduled if round_deadline is None else min(scheduled, round_deadline)  # past the limit: not waited for
            # uvloop's timers have millisecond granularity and may fire up to 1 ms early: never send early.
            while (delay := wake - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
        async with gate:
            if round_deadline is not None and time.perf_counter() >= round_deadline:
                requests = [_not_sent(item, round_index, limits)]
            else:
                requests = await _run_item(engine, tokenizer, item, sampling, round_index, limits, round_deadline)
            for request in requests:
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
