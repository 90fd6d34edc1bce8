"""What a load bench does, so the bench itself is parametrization and a call: the arrival schedule
for the case's rate, as many exact-length prompts as it sends, the unmeasured warm-up, and each
measured round run open loop — on the session engine's loop in this process, or spread over client
worker processes — with the load generator's self-check alongside."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from speedbench_plugin.case import CaseRunner, RoundFn, host_limits, request_limits
from speedbench_plugin.engines.base import Sampling
from speedbench_plugin.load.clients import ClientPool, WorkerSpec, observed_round
from speedbench_plugin.load.schedule import ArrivalPattern
from speedbench_plugin.load.selfcheck import clock_info
from speedbench_plugin.load.settings import LoadSettings
from speedbench_plugin.record import MeasuredRound, Record
from speedbench_plugin.runner import WorkItem

SPLIT = "load"


def items_for(prompts: Sequence[Any], count: int) -> list[WorkItem]:
    """``count`` work items from the prompts; where there are fewer prompts, they repeat with distinct
    ids (the ``load`` section records how many were distinct: a repeat may hit the prefix cache)."""
    if not prompts:
        return []
    return [WorkItem(p.question_id if i < len(prompts) else f"{p.question_id}~{i // len(prompts)}", p.tier,
                     prompt_ids=p.prompt_ids)
            for i, p in ((i, prompts[i % len(prompts)]) for i in range(count))]


class ClientPools:
    """At most one pool of client processes alive at a time, for the engine under test."""

    def __init__(self) -> None:
        self.live: dict[str, ClientPool] = {}

    def get(self, key: str, spec: WorkerSpec, processes: int) -> ClientPool:
        if key not in self.live:
            self.close()
            pool = ClientPool(spec, processes)
            pool.start()
            self.live[key] = pool
        return self.live[key]

    def close(self) -> None:
        for pool in self.live.values():
            pool.close()
        self.live.clear()


class LoadCase:
    def __init__(self, case: CaseRunner, settings: LoadSettings, pools: ClientPools,
                 prompt_cache: dict[int, dict[tuple[int, str], list[Any]]]) -> None:
        self.case, self.settings, self.pools, self.prompt_cache = case, settings, pools, prompt_cache

    def _round_fn(self, items: Sequence[WorkItem], sampling: Sampling, cap: int, pattern: ArrivalPattern,
                  offsets: Sequence[float], explicit_cap: int | None) -> RoundFn:
        target, settings = self.case.target, self.settings
        common = {"schedule": {"pattern": pattern.to_json(), "offsets_s": list(offsets)},
                  "concurrency_cap": explicit_cap}
        if settings.clients > 1:
            spec = WorkerSpec(target.settings.engine, target.host.engine.config, target.tokenizer.model_path,
                              settings.client_loop)

            # Started now, before the case snapshots the engine's counters: each worker's engine probes
            # the server with a request of its own, which must not count in the measured rounds.
            pool = self.pools.get(target.drafter.id, spec, settings.clients)

            def spread(index: int, tick: Callable[[Any], None] | None) -> MeasuredRound:
                measured = pool.run_round(items, sampling, cap, index, offsets, tick)
                return dataclasses.replace(measured, client={**(measured.client or {}), **common})

            return spread
        host = target.host
        limits = request_limits(target.settings, self.case.item.name)

        def here(index: int, tick: Callable[[Any], None] | None) -> MeasuredRound:
            measured, observed = host.run(observed_round(host.engine, target.tokenizer, items, sampling, cap, index,
                                                         tick, offsets, limits=limits),
                                          what=f"case {self.case.item.name}", **host_limits(target.settings))
            return dataclasses.replace(measured, client={"processes": 1, "clock": clock_info(), "workers": [observed],
                                                         **common})

        return here

    def run(self, bucket: int, tier: str, rate: float, concurrency: int | None, per_cell: int) -> Record:
        """One case: the throughput split's (bucket, tier) prompts at ``rate`` requests/s, capped at
        ``concurrency`` conversations in flight when the user set one."""
        from speedbench_plugin.throughput.case import prompts_for, sampling_for, warm_up

        target = self.case.target
        pattern = self.settings.pattern(rate)
        count = len(pattern.offsets(None if pattern.duration_s else per_cell))
        prompts = prompts_for(self.prompt_cache.setdefault(count, {}), bucket, tier, count, target.model,
                              target.settings)
        items = items_for(prompts, count)
        if not items:
            pytest.skip(f"no throughput prompts for bucket {bucket}, tier {tier}")
        warm_up(target.host, bucket, min(concurrency or len(items), 2), len(target.tokenizer.tokenizer))
        return self.run_items(items, {"bucket": bucket, "tier": tier}, pattern, concurrency, sampling_for(target.settings))

    def run_items(self, items: Sequence[WorkItem], labels: dict[str, Any], pattern: ArrivalPattern,
                  concurrency: int | None, sampling: Sampling | None = None) -> Record:
        """Any work items (a split's questions or prompts) open loop: item ``i`` is sent at the pattern's
        ``i``-th arrival (a conversation's later turns follow its own answers)."""
        offsets = pattern.offsets(len(items))
        if len(offsets) < len(items):  # duration-bound: what the schedule holds
            items = items[: len(offsets)]
        cap = concurrency or len(items)
        sampling = sampling or Sampling(self.case.target.settings.max_tokens, self.case.target.settings.temperature)
        return self.case.run(items, split=SPLIT, labels=labels, concurrency=cap, sampling=sampling,
                             arrival=pattern.label,
                             round_fn=self._round_fn(items, sampling, cap, pattern, offsets, concurrency))
