"""What a throughput bench does, so the bench itself is parametrization and a call: exact-length
prompts, an unmeasured warm-up at the bucket's length, ``ignore_eos`` so every tier and drafter does
the same work; the SSSD profiling pass; the run with a dynamic-SD table."""
from __future__ import annotations

import random
from typing import Any

import pytest

from speedbench_plugin.case import CaseRunner, EngineUnderTest
from speedbench_plugin.engines.base import Sampling
from speedbench_plugin.record import Record
from speedbench_plugin.runner import EngineHost, WorkItem, run_round
from speedbench_plugin.throughput.profile import DEFAULT_SIZES, profile_prefill

PROFILE_PROPERTY = "speedbench_step_profile"

WARMUP_MAX_TOKENS = 8
WARMUP_REQUESTS = 2
PROFILE_REPEATS = 3


def sampling_for(settings: Any) -> Sampling:
    # ignore_eos: every tier and drafter then produces the same number of tokens, so TPS compares equal work.
    return Sampling(max_tokens=settings.max_tokens, temperature=settings.temperature, ignore_eos=True)


def prompts_for(cache: dict[tuple[int, str], list[Any]], bucket: int, tier: str, per_cell: int, model: str,
                settings: Any) -> list[Any]:
    """Exact-length prompts for (bucket, tier), enough for ``per_cell`` and the highest concurrency."""
    from speedbench_plugin.data import DataUnavailable, load_throughput, plan_buckets
    from speedbench_plugin.data.throughput import build_throughput

    key = (bucket, tier)
    if key not in cache:
        _, skipped = plan_buckets(model, [bucket], settings.max_tokens)
        if skipped:
            pytest.skip(f"speedbench: {skipped[0].reason}")
        wanted = max(per_cell, *settings.concurrency)
        try:
            prompts = load_throughput(model, [bucket], [tier], wanted, settings.max_tokens)
        except DataUnavailable as exc:
            print(f"\nspeedbench: {exc}; building it now")
            build_throughput(model, buckets=[bucket], per_cell=max(wanted, 32), progress=False)
            prompts = load_throughput(model, [bucket], [tier], wanted, settings.max_tokens)
        cache[key] = prompts
    return cache[key]


def case_items(prompts: list[Any], per_cell: int, concurrency: int) -> list[WorkItem]:
    """``per_cell`` prompts, but never fewer than the concurrency: the case must reach its load."""
    chosen = prompts[: max(per_cell, concurrency)]
    if len(chosen) < concurrency:
        pytest.skip(f"{len(chosen)} prompts cannot load concurrency {concurrency}")
    return [WorkItem(p.question_id, p.tier, prompt_ids=p.prompt_ids) for p in chosen]


def warm_up(host: EngineHost, bucket: int, concurrency: int, vocab: int) -> None:
    """One short unmeasured round on fresh random prompts of the bucket's length (never the measured
    prompts, which would then hit the prefix cache): the engine's first passes at this prompt
    length pay one-off allocations. Capped at WARMUP_REQUESTS so a CPU sweep stays affordable."""
    rng = random.Random(f"warmup-{bucket}-{concurrency}")
    n = min(concurrency, WARMUP_REQUESTS)
    items = [WorkItem(f"warmup-{bucket}-c{concurrency}-{i}-{rng.random():.6f}", "warmup",
                      prompt_ids=tuple(rng.randrange(100, vocab) for _ in range(bucket))) for i in range(n)]
    host.run(run_round(host.engine, None, items, Sampling(WARMUP_MAX_TOKENS, ignore_eos=True), n))


class ThroughputCase:
    def __init__(self, case: CaseRunner) -> None:
        self.case = case

    def run(self, prompts: list[Any], bucket: int, tier: str, concurrency: int, per_cell: int, *,
            drafter: Any = None, dynamic_table: list[list[int]] | None = None) -> Record:
        if not prompts:
            pytest.skip(f"no throughput prompts for bucket {bucket}, tier {tier}")
        target = self.case.target
        items = case_items(prompts, per_cell, concurrency)
        warm_up(target.host, bucket, concurrency, len(target.tokenizer.tokenizer))
        return self.case.run(items, split="throughput", labels={"bucket": bucket, "tier": tier},
                             concurrency=concurrency, sampling=sampling_for(target.settings), drafter=drafter,
                             dynamic_table=dynamic_table)


class ProfileRun:
    """SSSD's knee: forward-pass time against batched tokens (runs with the ``none`` drafter only)."""

    def __init__(self, item: pytest.Item, target: EngineUnderTest, tokenizer: Any) -> None:
        self.item, self.target, self.tokenizer = item, target, tokenizer

    def run(self) -> list[dict[str, Any]]:
        sizes = [s for s in DEFAULT_SIZES if s < self.tokenizer.context_length]
        rows = profile_prefill(self.target.host, sizes, PROFILE_REPEATS, len(self.tokenizer.tokenizer))
        if len(rows) != len(sizes):
            pytest.fail(f"step profile: {len(sizes) - len(rows)} of {len(sizes)} prompt sizes failed", pytrace=False)
        self.item.user_properties.append((PROFILE_PROPERTY, rows))
        return rows


class DynamicCase:
    """One run with an emitted ``num_speculative_tokens_per_batch_size`` table; the report puts its
    TPS next to the best fixed k's at the same concurrency."""

    def __init__(self, item: pytest.Item, benchmark: Any, settings: Any, model: str, tokenizer: Any,
                 live: dict[str, Any], prompt_cache: dict[tuple[int, str], list[Any]], per_cell: int) -> None:
        self.item, self.benchmark, self.settings, self.model, self.tokenizer = item, benchmark, settings, model, tokenizer
        self.live, self.prompt_cache, self.per_cell = live, prompt_cache, per_cell

    def _engine(self, drafter: Any, table: list[list[int]]) -> Any:
        from speedbench_plugin.engine_start import start_engine

        key = f"{drafter.id}:{table}"
        if key not in self.live:
            for old in list(self.live):
                self.live.pop(old).close()
            spec_extra = {"num_speculative_tokens_per_batch_size": table}
            self.live[key] = start_engine(self.settings, self.model, drafter,
                                          {**self.settings.engine_args, "speculative_config": spec_extra})
        return self.live[key]

    def run(self, entry: Any, concurrency: int) -> Record:
        from speedbench_plugin.drafters import DrafterSpec
        from speedbench_plugin.identity import local_identity
        from speedbench_plugin.throughput.dynamic import validate_table

        if self.settings.engine != "vllm":
            pytest.skip("dynamic SD tables are a vLLM feature (speculative_config num_speculative_tokens_per_batch_size)")
        validate_table(entry.table)
        drafter = DrafterSpec.parse(entry.drafter)
        host = self._engine(drafter, entry.table)
        identity = local_identity(self.model)
        target = EngineUnderTest(host, self.settings, drafter, self.model, identity.sha, identity.method, self.tokenizer)
        prompts = prompts_for(self.prompt_cache, entry.bucket, entry.tier, self.per_cell, self.model, self.settings)
        runner = ThroughputCase(CaseRunner(self.item, self.benchmark, target))
        return runner.run(prompts, entry.bucket, entry.tier, concurrency, self.per_cell, dynamic_table=entry.table)
