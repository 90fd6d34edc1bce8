"""FakeEngine: a synthetic engine for the harness's own timing and for faults a real engine cannot
produce on demand. It runs no model.

Every request emits deterministic pseudo-random token ids in steps whose accepted-draft counts
follow a seeded geometric law, so metrics and plumbing can be checked against exact counts.
Engine args:

* ``step_s`` (sleep per step, default 0), ``accept`` (per-draft acceptance probability, 0.6);
* ``step_grid`` (each step ends on the next multiple of ``step_s`` of the system-wide perf_counter
  clock, as a batching engine emits one step to every running request at once; a chunk's emission
  time is then known, and fake engines in several processes stay in step);
* ``merge_every`` (hold every n-th step back so it arrives merged with the next one);
* ``cut_at_end`` (let the last step accept more drafts than ``max_tokens`` leaves room for, and
  deliver only what fits — the engine's counters keep the full count, as vLLM's do);
* ``per_step_record`` (fill the engine's per-step record, default true) and ``counters``
  (per-request counters, default true);
* ``counter_delay_s`` (reading the counters takes this long, as vLLM's polling does);
* ``counter_bias`` (per request, the counters claim this many more accepted drafts than happened:
  a counter bug that neither end cuts nor merges explain);
* ``client_cost_s`` (busy CPU time per streamed chunk on the event loop: a slow client, so the
  streamed figures fall behind what the engine's ``ceiling()`` path delivers);
* ``fail_request`` (a request id substring that raises), ``fail_start`` (raise in start: ``true``, or only for one drafter method, e.g. ``ngram``);
* hangs, which a real engine cannot produce on demand: ``hang_request`` (a request id substring
  whose request streams ``hang_after`` tokens, default 1, then never yields again), ``wedge``
  (after such a hang every later request hangs at once, until the engine is restarted) and
  ``hang_start`` (start never returns).

``ceiling()`` runs the same steps without streaming them (no per-chunk client cost).
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence

from speedbench_plugin.engines.base import (
    CeilingRun,
    Chunk,
    Engine,
    EngineCapabilities,
    EngineError,
    Sampling,
    SpecCounts,
    StepRecord,
    StreamResult,
)


def _busy(seconds: float) -> None:
    """Burn CPU on the event loop (a slow chunk handler), unlike a sleep, which yields."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _pace(step_s: float, grid: bool) -> None:
    if grid and step_s:
        now = time.perf_counter()
        await asyncio.sleep((math.floor(now / step_s) + 1) * step_s - now)
    else:
        await asyncio.sleep(step_s)


class FakeEngine(Engine):
    name = "fake"

    @property
    def version(self) -> str:
        return "fake-1"

    @property
    def k(self) -> int:
        return self.config.drafter.k if self.config.drafter.enabled else 0

    @property
    def capabilities(self) -> EngineCapabilities:
        args = self.config.engine_args
        per_request = bool(args.get("counters", True))
        per_step = per_request and bool(args.get("per_step_record", True))
        missing = () if per_step else ("no per-step record (engine arg per_step_record=false)",)
        sources = (("fake:per_request",) if per_request else ()) + ("fake:counters",)
        return EngineCapabilities(counter_sources=sources if self.k else (), per_step_record=per_step and bool(self.k),
                                  ceiling=True, missing=missing)

    _wedged = False

    async def _hang(self) -> None:
        """Never return (until cancelled): a hung engine."""
        if self.config.engine_args.get("wedge"):
            self._wedged = True
        await asyncio.Event().wait()

    def _hang_at(self, request_id: str) -> int | None:
        hang = self.config.engine_args.get("hang_request")
        if self._wedged:
            return 0
        return int(self.config.engine_args.get("hang_after", 1)) if hang and hang in request_id else None

    async def start(self) -> None:
        fail = self.config.engine_args.get("fail_start")
        # true: every start fails; a drafter method (e.g. ngram): only that drafter's engine
        if fail is not None and (fail is True or str(fail).lower() in ("true", "1", self.config.drafter.method)):
            raise EngineError(f"fake engine: start failure injected by fail_start={fail}")
        if self.config.engine_args.get("hang_start"):
            await self._hang()
        self._total = SpecCounts(0, 0, 0, [0] * self.k, "fake:counters")

    async def stop(self) -> None:
        return None

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        return await self._generate(prompt_ids, sampling, request_id, float(self.config.engine_args.get("client_cost_s", 0.0)))

    async def ceiling(self, prompts: Sequence[Sequence[int]], sampling: Sampling, concurrency: int) -> CeilingRun:
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int, ids: Sequence[int]) -> int:
            async with gate:
                return (await self._generate(ids, sampling, f"ceiling-{index}", 0.0)).output_tokens

        start = time.perf_counter()
        tokens = await asyncio.gather(*(one(i, ids) for i, ids in enumerate(prompts)))
        return CeilingRun(sum(tokens), time.perf_counter() - start, len(prompts), "fake engine, no streaming")

    async def _generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str,
                        client_cost_s: float) -> StreamResult:
        args = self.config.engine_args
        step_s = float(args.get("step_s", 0.0))
        accept = float(args.get("accept", 0.6))
        merge_every = int(args.get("merge_every", 0))
        cut_at_end = bool(args.get("cut_at_end", False))
        fail = args.get("fail_request")
        k = self.k
        rng = random.Random(f"{request_id}:{len(prompt_ids)}:{sum(prompt_ids)}")
        result = StreamResult(request_id, len(prompt_ids), time.perf_counter())
        counts = SpecCounts(0, 0, 0, [0] * k, "fake:per_request")
        accepted_steps: list[int] = []
        if fail and fail in request_id:
            raise EngineError(f"fake engine: failure injected for request {request_id}")
        step_grid = bool(args.get("step_grid", False))
        hang_at = self._hang_at(request_id)
        if hang_at == 0:
            await self._hang()
        if step_s:
            await _pace(step_s, step_grid)
        result.chunks.append(Chunk(time.perf_counter(), (rng.randrange(1000),)))
        if hang_at is not None and hang_at <= 1:
            await self._hang()
        produced, pending = 1, list[int]()
        step = 0
        while produced < sampling.max_tokens:
            accepted = 0
            while accepted < k and rng.random() < accept:
                accepted += 1
            room = sampling.max_tokens - produced
            if not cut_at_end:
                accepted = min(accepted, room - 1)
            emit = min(accepted + 1, room)  # with cut_at_end, drafts accepted beyond max_tokens are cut
            if k:
                counts.num_drafts += 1
                counts.num_draft_tokens += k
                counts.num_accepted_tokens += accepted
                for i in range(accepted):
                    counts.accepted_per_pos[i] += 1
                accepted_steps.append(accepted)
            tokens = tuple(rng.randrange(1000) for _ in range(emit))
            produced += emit
            step += 1
            await _pace(step_s, step_grid)
            pending.extend(tokens)
            if merge_every and step % merge_every == 1 and produced < sampling.max_tokens:
                continue  # hold this step back so it arrives merged with the next one
            result.chunks.append(Chunk(time.perf_counter(), tuple(pending)))
            pending = []
            if hang_at is not None and result.output_tokens >= hang_at:
                await self._hang()
            if client_cost_s:
                _busy(client_cost_s)
        if pending:
            result.chunks.append(Chunk(time.perf_counter(), tuple(pending)))
        result.finish_reason = "length"
        if k:
            counts.num_accepted_tokens += int(args.get("counter_bias", 0))
            if args.get("counters", True):
                result.spec = counts
                if args.get("per_step_record", True):
                    result.steps = StepRecord(tuple(accepted_steps), tuple([k] * len(accepted_steps)), "fake:per_step")
            self._total = SpecCounts.total([self._total, counts], "fake:counters")
        return result

    async def counters(self) -> SpecCounts | None:
        delay = float(self.config.engine_args.get("counter_delay_s", 0.0))
        if delay:
            await asyncio.sleep(delay)
        return self._total if self.k else None
