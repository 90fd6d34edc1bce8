"""Drive a workload through an engine: chat template and tokenization here, token ids to the
engine, multi-turn conversations replayed with the model's own answers, bounded concurrency."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from speedbench_plugin.engines.base import Engine, Sampling, SpecCounts, StreamResult
from speedbench_plugin.prompts import ChatTokenizer

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


@dataclass
class TurnResult:
    question_id: str
    category: str
    turn: int
    stream: StreamResult

    @property
    def error(self) -> str | None:
        return self.stream.error


@dataclass
class RoundResult:
    """One pass over the workload, with the engine's cumulative counters around it."""

    turns: list[TurnResult] = field(default_factory=list)
    t_start: float = 0.0
    t_end: float = 0.0
    counters: SpecCounts | None = None

    @property
    def streams(self) -> list[StreamResult]:
        return [t.stream for t in self.turns if t.stream.error is None]

    @property
    def errors(self) -> list[str]:
        return [f"{t.question_id} turn {t.turn}: {t.error}" for t in self.turns if t.error]


async def _run_item(
    engine: Engine,
    tokenizer: ChatTokenizer | None,
    item: WorkItem,
    sampling: Sampling,
    round_index: int,
) -> list[TurnResult]:
    results: list[TurnResult] = []
    if item.prompt_ids is not None:
        prompts: list[Sequence[int] | None] = [item.prompt_ids]
    else:
        prompts = [None] * len(item.turns)
    messages: list[dict[str, str]] = []
    for turn, ready in enumerate(prompts):
        request_id = f"{item.question_id}-t{turn}-r{round_index}"
        try:
            if ready is None:
                assert tokenizer is not None, "text turns need a tokenizer"
                messages.append({"role": "user", "content": item.turns[turn]})
                prompt_ids: Sequence[int] = tokenizer.encode_chat(messages)
                tokenizer.check_fits(prompt_ids, sampling.max_tokens, f"prompt {item.question_id} turn {turn + 1}")
            else:
                prompt_ids = ready
            stream = await engine.generate(prompt_ids, sampling, request_id)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the others
            # An engine may attach what streamed before it failed; keep it for the record.
            stream = getattr(exc, "result", None) or StreamResult(request_id, 0, 0.0)
            stream.error = f"{type(exc).__name__}: {exc}"
            results.append(TurnResult(item.question_id, item.category, turn, stream))
            break  # later turns depend on this answer
        results.append(TurnResult(item.question_id, item.category, turn, stream))
        if ready is None and turn + 1 < len(prompts):
            messages.append({"role": "assistant", "content": tokenizer.decode(stream.output_ids)})  # type: ignore[union-attr]
    return results


async def run_round(
    engine: Engine,
    tokenizer: ChatTokenizer | None,
    items: Sequence[WorkItem],
    sampling: Sampling,
    concurrency: int,
    round_index: int = 0,
    on_turn: Callable[[TurnResult], None] | None = None,
) -> RoundResult:
    """Run every item once, at most ``concurrency`` conversations in flight (as specdec_bench)."""
    gate = asyncio.Semaphore(concurrency)
    before = await engine.counters()
    out = RoundResult(t_start=time.perf_counter())

    async def one(item: WorkItem) -> None:
        async with gate:
            for turn in await _run_item(engine, tokenizer, item, sampling, round_index):
                out.turns.append(turn)
                if on_turn is not None:
                    on_turn(turn)

    await asyncio.gather(*(one(item) for item in items))
    out.t_end = time.perf_counter()
    after = await engine.counters()
    if before is not None and after is not None:
        out.counters = after - before
    out.turns.sort(key=lambda t: (t.question_id, t.turn))
    return out
