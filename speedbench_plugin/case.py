"""One benchmark case: run the workload under pytest-benchmark, build its record once, publish it.

pytest-benchmark times the workload only: the engine's cumulative counters are snapshotted in the
untimed ``setup`` before each round and once after the last (round ``i`` is the difference of
snapshots ``i + 1`` and ``i``), and any reference run happens after the timed rounds.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin import redaction
from speedbench_plugin.engines.base import CeilingRun, Sampling, SpecCounts
from speedbench_plugin.multiturn import case_fields
from speedbench_plugin.record import CaseKey, ClientBoundPolicy, MeasuredRound, Record, build_record
from speedbench_plugin.runner import (
    CANCEL_GRACE_S,
    EngineHost,
    EngineHung,
    RequestLimits,
    WorkItem,
    run_round,
)
from speedbench_plugin.settings import REQUEST_TIMEOUT, REQUEST_TOTAL_TIMEOUT, ROUND_TIMEOUT, Settings
from speedbench_plugin.telemetry.sampler import start_sampler
from speedbench_plugin.telemetry.settings import interval as telemetry_interval

if TYPE_CHECKING:
    from speedbench_plugin.drafters import DrafterSpec
    from speedbench_plugin.prompts import ChatTokenizer
    from speedbench_plugin.supervisor import EngineSupervisor

RECORD_KEY = pytest.StashKey[Record]()
# Runs one measured round: (round index, per-request callback) -> the round. The default drives the
# session engine through runner.run_round; the load plugin passes an arrival schedule or worker processes.
RoundFn = Callable[[int, Callable[[Any], None] | None], MeasuredRound]
LABELS = ("category", "bucket", "tier")


@dataclass
class EngineUnderTest:
    """A started engine with what a record needs to name it."""

    host: EngineHost
    settings: Settings
    drafter: DrafterSpec  # as the user gave it (not resolved to a cache path)
    model: str
    model_sha: str
    model_identity: str
    tokenizer: ChatTokenizer
    devices: str | None = None
    supervisor: EngineSupervisor | None = None  # checks and restarts the engine after failures


def request_limits(settings: Settings, case: str) -> RequestLimits:
    """The settings' limits for one case's requests; messages name the case and the option."""
    return RequestLimits(
        idle_s=settings.request_timeout, total_s=settings.request_total_timeout, round_s=settings.round_timeout,
        retries=settings.request_retries, case=case,
        idle_option=f"--{REQUEST_TIMEOUT.name}", total_option=f"--{REQUEST_TOTAL_TIMEOUT.name}",
        round_option=f"--{ROUND_TIMEOUT.name} {settings.round_timeout or 0:g}",
    )


STALL_GRACE_S = 60.0  # tokenizing a long prompt on the loop is not a hang


def host_limits(settings: Settings) -> dict[str, float | None]:
    """``EngineHost.run`` guards around a round: a little past the round limit (the round's own
    watchdog ends it first), and a blocked event loop for well over what a request may go idle."""
    round_s, idle_s = settings.round_timeout, settings.request_timeout or settings.round_timeout
    return {"timeout": None if round_s is None else round_s + 2 * CANCEL_GRACE_S,
            "stall_s": None if idle_s is None else idle_s + STALL_GRACE_S}


def _progress_bar(settings: Settings, total: int, desc: str) -> Any:
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


def _deltas(snapshots: Sequence[SpecCounts | None]) -> list[tuple[SpecCounts | None, str | None]]:
    """Each round's counter delta, or None with the reason: a snapshot missing, or counters that
    went backwards (the server restarted between the snapshots)."""
    out: list[tuple[SpecCounts | None, str | None]] = []
    for before, after in itertools.pairwise(snapshots):
        if after is None or before is None:
            out.append((None, None))
            continue
        delta = after - before
        if min([delta.num_drafts, delta.num_draft_tokens, delta.num_accepted_tokens, *delta.accepted_per_pos]) < 0:
            why = (f"counters unavailable: the engine's {after.source} counters went backwards during the round "
                   "(was the server restarted?)")
            out.append((None, why))
        else:
            out.append((delta, None))
    return out


class CaseRunner:
    """Bound to one test item; ``run`` executes the case and fails it on errors or regressions."""

    def __init__(self, item: pytest.Item, benchmark: Any, target: EngineUnderTest) -> None:
        self.item = item
        self.benchmark = benchmark
        self.target = target

    def _check_engine(self) -> str | None:
        """After failures: whether the engine still answers, and what happens next if not."""
        supervisor = self.target.supervisor
        if supervisor is None:
            return None
        reason = supervisor.check()
        if reason is None:
            return None
        if supervisor.dead:
            return supervisor.dead
        left = supervisor.restarts_left
        return f"{reason}; it will be restarted for the remaining cases ({left} restart{'s' if left != 1 else ''} left)"

    def _case_key(self, split: str, labels: dict[str, Any], concurrency: int, sampling: Sampling, rounds: int,
                  drafter: DrafterSpec, dynamic_table: list[list[int]] | None, arrival: str | None = None) -> CaseKey:
        unknown = set(labels) - set(LABELS)
        if unknown:
            raise ValueError(f"case labels {sorted(unknown)} are not among {LABELS}")
        engine = self.target.host.engine
        return CaseKey(
            case_id=self.item.name,  # e.g. test_qualitative[vllm-ngram_k3-coding]
            nodeid=self.item.nodeid,
            split=split,
            engine=engine.name,
            engine_version=engine.version,
            model=self.target.model,
            model_sha=self.target.model_sha,
            model_identity=self.target.model_identity,
            drafter=drafter,
            concurrency=concurrency,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            rounds=rounds,
            devices=self.target.devices,
            dynamic_table=dynamic_table,
            arrival=arrival,
            **labels,
        )

    def measure(self, items: Sequence[WorkItem], sampling: Sampling, concurrency: int, rounds: int,
                round_fn: RoundFn | None = None) -> list[MeasuredRound]:
        """The timed rounds, each with the engine's counter delta around it."""
        settings, host = self.target.settings, self.target.host
        limits = request_limits(settings, self.item.name)
        guards = host_limits(settings)
        run_one: RoundFn = round_fn or (lambda index, tick: host.run(run_round(
            host.engine, self.target.tokenizer, items, sampling, concurrency, index, tick, limits=limits),
            what=f"case {self.item.name}", **guards))
        results: list[MeasuredRound] = []
        snapshots: list[SpecCounts | None] = []
        snapshot_notes: list[str] = []
        total_requests = sum(item.requests for item in items)

        def snapshot() -> None:  # pytest-benchmark's untimed setup
            try:
                snapshots.append(host.counters(timeout=settings.engine_check_timeout))
            except Exception as exc:  # noqa: BLE001 - counters are optional: the requests are still measured
                snapshots.append(None)
                why = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} (no message)"
                snapshot_notes.append(f"counters unavailable: reading them failed: {why}")

        def one_round() -> None:
            bar = _progress_bar(settings, total_requests, f"{self.item.name} round {len(results) + 1}/{rounds}")
            tick = (lambda _request: bar.update(1)) if bar is not None else None
            try:
                with _uncaptured(self.item.config) if bar is not None else contextlib.nullcontext():
                    results.append(run_one(len(results), tick))
            finally:
                if bar is not None:
                    bar.close()

        # Telemetry samples on its own thread from before the first round to after the last; each
        # round's figures are cut from the samples afterwards (nothing is read on the measured path).
        sampler = start_sampler(telemetry_interval(self.item.config))
        try:
            if getattr(self.benchmark, "disabled", False):
                # A disabled pytest-benchmark (under xdist, or --benchmark-disable) runs its target once;
                # the suite's rounds must all still run.
                for _ in range(rounds):
                    snapshot()
                    one_round()
            else:
                self.benchmark.pedantic(one_round, setup=snapshot, rounds=rounds, iterations=1, warmup_rounds=0)
            snapshot()
        finally:
            if sampler is not None:
                sampler.stop()
        measured = []
        for i, (result, (delta, note)) in enumerate(zip(results, _deltas(snapshots))):
            # A failed read is noted against the rounds it leaves without a delta.
            notes = [n for n in (note, *(snapshot_notes if delta is None else ())) if n]
            measured.append(dataclasses.replace(result, counters=delta, counters_note="; ".join(dict.fromkeys(notes)) or None,
                                                telemetry=sampler.window(result.t_start, result.t_end) if sampler else None))
        return measured

    def ceiling(self, split: str, measured: Sequence[MeasuredRound], sampling: Sampling,
                concurrency: int) -> CeilingRun | str | None:
        """The engine's own non-streaming run of the first round's prompts (after the timed rounds,
        outside pytest-benchmark's timing), or why there is none."""
        mode = self.target.settings.ceiling
        if mode == "off" or (mode == "auto" and split != "throughput"):
            return None
        engine = self.target.host.engine
        if not engine.capabilities.ceiling:
            return f"{engine.name}: no non-streaming path to measure a ceiling with"
        prompts = [r.prompt_ids for r in measured[0].requests if r.prompt_ids is not None] if measured else []
        if not prompts:
            return None
        cpu = time.process_time()
        try:
            run = self.target.host.run(engine.ceiling(prompts, sampling, concurrency),
                                       what=f"case {self.item.name}: the ceiling run", **host_limits(self.target.settings))
        except Exception as exc:  # noqa: BLE001 - the measured rounds stand without a ceiling
            return f"{engine.name}: the ceiling run failed: {type(exc).__name__}: {exc}"
        return dataclasses.replace(run, cpu_s=time.process_time() - cpu) if run is not None else None

    def run(
        self,
        items: Sequence[WorkItem],
        *,
        split: str,
        labels: dict[str, Any],
        concurrency: int,
        sampling: Sampling | None = None,
        rounds: int | None = None,
        drafter: DrafterSpec | None = None,
        dynamic_table: list[list[int]] | None = None,
        arrival: str | None = None,
        round_fn: RoundFn | None = None,
    ) -> Record:
        settings = self.target.settings
        sampling = sampling or Sampling(max_tokens=settings.max_tokens, temperature=settings.temperature)
        rounds = rounds or settings.rounds
        config = self.item.config
        self.benchmark.group = f"{split}:{'-'.join(str(v) for v in labels.values())}"
        conversations = case_fields(items)  # the multi-turn mode; a case mixing two sources fails before it runs
        try:
            measured = self.measure(items, sampling, concurrency, rounds, round_fn)
        except EngineHung as exc:
            # The engine's loop is blocked or a round overran every guard: nothing of it can be trusted.
            check = self._check_engine()
            pytest.fail(f"{exc}" + (f"\nengine check: {check}" if check else ""), pytrace=False)
        case = dataclasses.replace(self._case_key(split, labels, concurrency, sampling, rounds, drafter or self.target.drafter,
                                                  dynamic_table, arrival), **conversations)
        record = build_record(case, self.target.host.engine.describe(), measured,
                              tensor_parallel_size=settings.tensor_parallel_size,
                              policy=ClientBoundPolicy(settings.client_bound_efficiency),
                              ceiling=self.ceiling(split, measured, sampling, concurrency),
                              eos_token_ids=self.target.tokenizer.eos_token_ids)
        check = self._check_engine() if record.errors else None
        if check is not None:
            record = record.with_sections({"engine_check": check})
        for sections in config.hook.pytest_speedbench_update_record(config=config, record=record, rounds=measured):
            if sections:
                record = record.with_sections(sections)
        data = record.to_json()
        if redaction.scrub(data) != data:  # e.g. an engine describing its endpoint with its credentials
            record = Record.from_json(redaction.scrub(data))
        self.item.stash[RECORD_KEY] = record
        self.benchmark.extra_info["speedbench"] = record.to_json()
        problems = [msg for msgs in config.hook.pytest_speedbench_check(config=config, record=record) for msg in (msgs or [])]
        if record.errors:
            shown = "\n  ".join(record.errors[:10])
            more = f"\n  ... and {len(record.errors) - 10} more" if len(record.errors) > 10 else ""
            measured_ok = len(record.requests) - len(record.errors)
            problems.insert(0, f"{len(record.errors)} request(s) failed ({measured_ok} measured):\n  {shown}{more}")
            if check is not None:
                problems.insert(1, f"engine check: {check}")
        if problems:
            pytest.fail(redaction.scrub_text("\n".join(problems)), pytrace=False)
        return record
