"""``--speedbench-shard I/N``: run a deterministic, balanced share of the session's cases, so a
matrix of machines (a CI matrix, a Kubernetes Indexed Job) runs one session between them and
``python -m speedbench_plugin merge`` joins their run folders.

Every shard collects the same cases and computes the same plan: cases ordered by engine and
drafter (the session engine's parameter), then cut into N contiguous runs of about equal cost.
Contiguous runs keep each (engine, drafter) on as few shards as possible, so a shard starts each
of its engines once. Cost is a case's measured duration from an earlier run's results file
(``--speedbench-shard-durations``) or, without one, the same estimate for every case (requests ×
max tokens × rounds, equal across a session's cases before they run).

Each shard writes ``shard.json`` into its run folder: which share it ran, the cases of every share
(so the merge can name what is missing) and the machine's fingerprint (the merge refuses shards
that ran on different GPU models).
"""
from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin import options as o
from speedbench_plugin.cache import atomic_write_json
from speedbench_plugin.compare.baseline import hardware_fingerprint
from speedbench_plugin.rundir import SHARD_NAME, run_directory
from speedbench_plugin.settings import settings_of

SHARD_SCHEMA = 1


@dataclass(frozen=True)
class ShardSpec:
    index: int  # 1-based, as the user writes it
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_spec(raw: Any, name: str) -> ShardSpec | None:
    """``"2/3"`` -> ShardSpec(2, 3); a bad value is a usage error naming the option."""
    if raw is None or str(raw).strip() == "":
        return None
    text = str(raw).strip()
    index, sep, count = text.partition("/")
    try:
        spec = ShardSpec(int(index), int(count)) if sep else None
    except ValueError:
        spec = None
    if spec is None or spec.count < 1 or not 1 <= spec.index <= spec.count:
        raise pytest.UsageError(f"--{name} {text!r}: give I/N with 1 <= I <= N, e.g. 1/3 (a CI matrix index starting at 0 "
                                "needs +1; a Kubernetes Indexed Job's JOB_COMPLETION_INDEX too)")
    return spec


SHARD = o.Option("speedbench-shard", "run share I of N of the session's cases (1/3, 2/3, 3/3); join the run folders "
                 "with `python -m speedbench_plugin merge`", kind=shard_spec)
SHARD_DURATIONS = o.Option("speedbench-shard-durations",
                           "an earlier run's results.json (or run folder): balance shards by its measured case durations")
OPTIONS = (SHARD, SHARD_DURATIONS)


def engine_group(item: pytest.Item) -> str:
    """The (engine, drafter) a case runs on: its session engine parameter's id (``vllm-ngram_k3``)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "sb_engine" not in callspec.params:
        return ""
    # The id leads the test id's parameter part: test_x[vllm-ngram_k3-coding].
    drafter = callspec.params["sb_engine"]
    return str(getattr(drafter, "id", drafter))


def plan(nodeids: Sequence[str], groups: Sequence[str], costs: Sequence[float], count: int) -> list[list[str]]:
    """Cut the cases, ordered by group then node id, into ``count`` contiguous runs whose cumulative
    costs end as near as possible to equal fractions of the total. Deterministic in its inputs."""
    order = sorted(range(len(nodeids)), key=lambda i: (groups[i], nodeids[i]))
    total = sum(costs[i] for i in order)
    shares: list[list[str]] = [[] for _ in range(count)]
    done = 0.0
    share = 0
    for i in order:
        # A case goes to the share whose slice of the total holds the case's midpoint.
        middle = done + costs[i] / 2
        while share < count - 1 and total > 0 and middle >= total * (share + 1) / count:
            share += 1
        shares[share].append(nodeids[i])
        done += costs[i]
    return shares


def recorded_durations(path: Path) -> dict[str, float]:
    """Case node id -> seconds its rounds took, from an earlier results.json (or a run folder)."""
    file = path / "results.json" if path.is_dir() else path
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--{SHARD_DURATIONS.name} {path}: cannot read {file} ({exc})") from None
    out: dict[str, float] = {}
    for bench in document.get("benchmarks", []) if isinstance(document, dict) else []:
        record = (bench.get("extra_info") or {}).get("speedbench") or {}
        nodeid = (record.get("case") or {}).get("nodeid")
        walls = (record.get("speed") or {}).get("wall_time_s_rounds") or []
        if nodeid and walls:
            out[str(nodeid)] = float(sum(w for w in walls if isinstance(w, (int, float))))
    if not out:
        raise pytest.UsageError(f"--{SHARD_DURATIONS.name} {path}: {file} holds no case durations (a speedbench "
                                "results.json or --speedbench-json file has them)")
    return out


class ShardPlugin:
    def __init__(self, config: pytest.Config, spec: ShardSpec, durations: dict[str, float] | None) -> None:
        self.config = config
        self.spec = spec
        self.durations = durations
        self.shares: list[list[str]] | None = None
        self._resumed_items: list[pytest.Item] = []

    def pytest_report_header(self) -> list[str]:
        how = "recorded durations" if self.durations else "equal cost per case"
        return [f"speedbench shard {self.spec} (balanced by {how})"]

    def _estimate(self) -> float:
        settings = settings_of(self.config)
        return float(settings.rounds * settings.max_tokens * (settings.num_requests or 1))

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        """A resumed shard plans over the cases its journal holds too, so its plan does not move."""
        reports = self.config.pluginmanager.get_plugin("speedbench-reports")
        resumed = getattr(reports, "resumed", None)
        if resumed is not None:
            self._resumed_items += [item for item in items if item.nodeid in resumed.records]

    @pytest.hookimpl(wrapper=True)  # after every other selection (-m, -k, resume): plan what is left
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> Generator[None, None, None]:
        yield
        planned = items + [i for i in self._resumed_items if i not in items]
        default = self._estimate()
        known = [d for d in (self.durations or {}).values()]
        fallback = sum(known) / len(known) if known else default
        costs = [(self.durations or {}).get(i.nodeid, fallback) if self.durations else default for i in planned]
        self.shares = plan([i.nodeid for i in planned], [engine_group(i) for i in planned], costs, self.spec.count)
        mine = set(self.shares[self.spec.index - 1])
        others = [item for item in items if item.nodeid not in mine]
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = [item for item in items if item.nodeid in mine]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return
        document = {
            "schema": SHARD_SCHEMA,
            "shard": {"index": self.spec.index, "count": self.spec.count},
            # None under pytest-xdist: its controller collects nothing; the merge then names no missing case.
            "shares": self.shares,
            "hardware": hardware_fingerprint(),
        }
        atomic_write_json(run_directory(self.config) / SHARD_NAME, document)


def pytest_addoption(parser: pytest.Parser) -> None:
    o.add_options(parser, OPTIONS)


@pytest.hookimpl(trylast=True)  # after the lead plugin stashed its Settings
def pytest_configure(config: pytest.Config) -> None:
    spec = o.value(config, SHARD)
    raw_durations = o.value(config, SHARD_DURATIONS)
    if spec is None:
        if raw_durations:
            raise pytest.UsageError(f"--{SHARD_DURATIONS.name} needs --{SHARD.name} I/N")
        return
    durations = recorded_durations(Path(raw_durations).expanduser()) if raw_durations else None
    config.pluginmanager.register(ShardPlugin(config, spec, durations), "speedbench-shard")
