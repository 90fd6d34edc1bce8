"""One benchmark case: run the workload under pytest-benchmark, build and publish its record."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from speedbench_plugin.engines.base import Sampling
from speedbench_plugin.record import CaseInfo, build_record
from speedbench_plugin.runner import EngineHost, RoundResult, WorkItem
from speedbench_plugin.settings import Settings

RECORD_KEY = pytest.StashKey[dict]()


@dataclass
class EngineUnderTest:
    """A started engine with what a record needs to name it."""

    host: EngineHost
    settings: Settings
    drafter: Any  # DrafterSpec
    model: str
    model_sha: str
    tokenizer: Any  # ChatTokenizer


def _progress_bar(settings: Settings, total: int, desc: str):
    if settings.progress == "off" or total <= 1:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", leave=False, mininterval=0.5 if settings.progress == "on" else 5)


@contextlib.contextmanager
def _uncaptured(config: pytest.Config) -> Iterator[None]:
    """Let the progress bar reach the terminal through pytest's output capture."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


class CaseRunner:
    """Bound to one test item; ``run`` executes the case and fails it on errors or regressions."""

    def __init__(self, item: pytest.Item, benchmark: Any, target: EngineUnderTest) -> None:
        self.item = item
        self.benchmark = benchmark
        self.target = target

    def run(
        self,
        items: Sequence[WorkItem],
        *,
        split: str,
        labels: dict[str, Any],
        concurrency: int,
        sampling: Sampling | None = None,
        rounds: int | None = None,
        drafter_label: str | None = None,
    ) -> dict[str, Any]:
        settings = self.target.settings
        drafter = self.target.drafter
        sampling = sampling or Sampling(max_tokens=settings.max_tokens, temperature=settings.temperature)
        rounds = rounds or settings.rounds
        engine = self.target.host.engine
        case_id = self.item.name  # e.g. test_qualitative[vllm-ngram_k3-coding]
        results: list[RoundResult] = []
        total_requests = sum(max(1, len(i.turns)) if i.prompt_ids is None else 1 for i in items)

        def one_round() -> None:
            bar = _progress_bar(settings, total_requests, f"{case_id} round {len(results) + 1}/{rounds}")
            tick = (lambda _turn: bar.update(1)) if bar is not None else None
            from speedbench_plugin.runner import run_round

            try:
                with _uncaptured(self.item.config) if bar is not None else contextlib.nullcontext():
                    results.append(
                        self.target.host.run(
                            run_round(engine, self.target.tokenizer, items, sampling, concurrency, len(results), tick)
                        )
                    )
            finally:
                if bar is not None:
                    bar.close()

        self.benchmark.group = f"{split}:{'-'.join(str(v) for v in labels.values())}"
        if getattr(self.benchmark, "disabled", False):
            # A disabled pytest-benchmark (under xdist, or --benchmark-disable) runs its target once;
            # the suite's rounds must all still run.
            for _ in range(rounds):
                one_round()
        else:
            self.benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
        info = CaseInfo(
            case_id=case_id,
            split=split,
            engine=engine.name,
            engine_version=engine.version,
            model=self.target.model,
            model_sha=self.target.model_sha,
            drafter=drafter_label or str(drafter),
            drafter_id=drafter.id,
            k=drafter.k if drafter.enabled else 0,
            concurrency=concurrency,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            labels=labels,
        )
        record = build_record(info, results)
        self.benchmark.extra_info["speedbench"] = record
        self.item.stash[RECORD_KEY] = record
        problems = [msg for msgs in self.item.config.hook.pytest_speedbench_check(config=self.item.config, record=record) for msg in (msgs or [])]
        if record["errors"]:
            shown = "\n  ".join(record["errors"][:10])
            more = f"\n  ... and {len(record['errors']) - 10} more" if len(record["errors"]) > 10 else ""
            problems.insert(0, f"{len(record['errors'])} request(s) failed:\n  {shown}{more}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
        return record
