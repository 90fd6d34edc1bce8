"""FakeEngine: a synthetic engine for the harness's own timing and fault-injection tests.

It runs no model. Every request emits deterministic pseudo-random token ids in steps whose
accepted-draft counts follow a seeded geometric law, so metrics and plumbing can be checked
against exact counts. Engine args: ``step_s`` (sleep per step, default 0), ``accept`` (per-draft
acceptance probability, default 0.6), ``fail_request`` (a request id substring that raises),
``fail_start`` (raise in start), ``merge_every`` (merge every n-th pair of steps into one chunk).
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

from speedbench_plugin.engines.base import Chunk, Engine, EngineError, Sampling, SpecCounts, StreamResult


class FakeEngine(Engine):
    name = "fake"

    @property
    def version(self) -> str:
        return "fake-1"

    async def start(self) -> None:
        if self.config.engine_args.get("fail_start"):
            raise EngineError("fake engine: start failure injected by fail_start")
        self._total = SpecCounts(0, 0, 0, [0] * self.config.drafter.k, "fake:counters")

    async def stop(self) -> None:
        return None

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        args = self.config.engine_args
        step_s = float(args.get("step_s", 0.0))
        accept = float(args.get("accept", 0.6))
        merge_every = int(args.get("merge_every", 0))
        fail = args.get("fail_request")
        k = self.config.drafter.k if self.config.drafter.enabled else 0
        rng = random.Random(f"{request_id}:{len(prompt_ids)}:{sum(prompt_ids)}")
        result = StreamResult(request_id, len(prompt_ids), time.perf_counter())
        counts = SpecCounts(0, 0, 0, [0] * k, "fake:per_request")
        if fail and fail in request_id:
            raise EngineError(f"fake engine: failure injected for request {request_id}")
        if step_s:
            await asyncio.sleep(step_s)
        result.chunks.append(Chunk(time.perf_counter(), (rng.randrange(1000),)))
        produced, pending = 1, []
        step = 0
        while produced < sampling.max_tokens:
            accepted = 0
            while accepted < k and rng.random() < accept:
                accepted += 1
            accepted = min(accepted, sampling.max_tokens - produced - 1)
            emit = accepted + 1
            if k:
                counts.num_drafts += 1
                counts.num_draft_tokens += k
                counts.num_accepted_tokens += accepted
                for i in range(accepted):
                    counts.accepted_per_pos[i] += 1
            tokens = tuple(rng.randrange(1000) for _ in range(emit))
            produced += emit
            step += 1
            if step_s:
                await asyncio.sleep(step_s)
            else:
                await asyncio.sleep(0)
            pending.extend(tokens)
            if merge_every and step % merge_every == 1 and produced < sampling.max_tokens:
                continue  # hold this step back so it arrives merged with the next one
            result.chunks.append(Chunk(time.perf_counter(), tuple(pending)))
            pending = []
        if pending:
            result.chunks.append(Chunk(time.perf_counter(), tuple(pending)))
        result.finish_reason = "length"
        if k:
            result.spec = counts
            self._total = SpecCounts.total([self._total, counts], "fake:counters")
        return result

    async def counters(self) -> SpecCounts | None:
        return self._total if self.config.drafter.enabled else None
