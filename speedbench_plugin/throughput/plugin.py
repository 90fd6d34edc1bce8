"""pytest plugin for the throughput benches: options, the draft-length expansion, bucket/tier
parametrization, the throughput prompts fixture, and the sweep report.

Loaded through the ``speedbench_throughput`` pytest11 entry point.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from speedbench_plugin.options import Option

# CPU-sized sweep; a GPU preset sweeps up to 512 (REFERENCE §3: SPEED-Bench batch 1–512).
CPU_CONCURRENCY = (1, 2, 4, 8)
GPU_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DEFAULT_PER_CELL = 8  # prompts per (bucket, tier) case on CPU; --speedbench-num-requests overrides
DYNAMIC_TEST = "test_dynamic_table"
PROFILE_TEST = "test_step_profile"

OPTIONS: tuple[Option, ...] = (
    Option("speedbench-draft-lengths", "draft-length sweep: comma list of k, each SD drafter runs at every k", None),
    Option("speedbench-buckets", "throughput input-length buckets in tokens, comma list (1k = 1024)", "1024"),
    Option("speedbench-tiers", "throughput tiers: low_entropy, mixed, high_entropy, random (comma list)",
           "low_entropy,mixed,high_entropy,random"),
)

THROUGHPUT_SETTINGS_KEY = pytest.StashKey["ThroughputSettings"]()


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("speedbench", "speedbench: speculative decoding benchmarks")
    for option in OPTIONS:
        group.addoption(f"--{option.name}", action="store", dest=option.dest, default=None, help=option.help)
        parser.addini(option.dest, option.help + " (ini)", type="string")


def get(config: pytest.Config, name: str) -> Any:
    """Command line, then ini, then default (as ``speedbench_plugin.options.get``)."""
    option = next(o for o in OPTIONS if o.name == name)
    value = config.getoption(option.dest)
    if value is None:
        value = config.getini(option.dest) or None
    return option.default if value is None else value


def parse_positive_ints(text: str, option: str, *, allow_k_suffix: bool = False) -> tuple[int, ...]:
    """``"1,2,4"`` → (1, 2, 4); with ``allow_k_suffix``, ``"1k"`` = 1024. Errors name the option."""
    values: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        scale = 1
        digits = part
        if allow_k_suffix and part.lower().endswith("k"):
            scale, digits = 1024, part[:-1]
        try:
            value = int(digits) * scale
        except ValueError:
            raise pytest.UsageError(f"--{option}: {part!r} is not a positive integer") from None
        if value < 1:
            raise pytest.UsageError(f"--{option}: {part!r} is not a positive integer")
        if value not in values:
            values.append(value)
    if not values:
        raise pytest.UsageError(f"--{option}: give at least one positive integer")
    return tuple(values)


@dataclass(frozen=True)
class ThroughputSettings:
    draft_lengths: tuple[int, ...] | None
    buckets: tuple[int, ...]
    tiers: tuple[str, ...]
    per_cell: int
    tensor_parallel_size: int

    @classmethod
    def from_config(cls, config: pytest.Config, num_requests: int | None, engine_args: dict[str, Any]) -> ThroughputSettings:
        from speedbench_plugin.data import ALL_TIERS

        lengths = get(config, "speedbench-draft-lengths")
        tiers = tuple(t.strip() for t in str(get(config, "speedbench-tiers")).split(",") if t.strip())
        unknown = [t for t in tiers if t not in ALL_TIERS]
        if unknown or not tiers:
            raise pytest.UsageError(
                f"--speedbench-tiers: unknown tier(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ALL_TIERS)}"
            )
        tp = engine_args.get("tensor_parallel_size", 1)
        if not isinstance(tp, int) or tp < 1:
            raise pytest.UsageError(f"--speedbench-engine-args tensor_parallel_size={tp!r}: not a positive integer")
        return cls(
            draft_lengths=parse_positive_ints(lengths, "speedbench-draft-lengths") if lengths else None,
            buckets=parse_positive_ints(get(config, "speedbench-buckets"), "speedbench-buckets", allow_k_suffix=True),
            tiers=tiers,
            per_cell=num_requests or DEFAULT_PER_CELL,
            tensor_parallel_size=tp,
        )


def expand_drafters(drafters: tuple[Any, ...], draft_lengths: tuple[int, ...] | None) -> tuple[Any, ...]:
    """Every SD drafter once per draft length (``none`` stays once); order kept, duplicates dropped."""
    if not draft_lengths:
        return drafters
    expanded: list[Any] = []
    for drafter in drafters:
        for variant in ([drafter] if not drafter.enabled else [drafter.with_k(k) for k in draft_lengths]):
            if variant.id not in {d.id for d in expanded}:
                expanded.append(variant)
    return tuple(expanded)


def throughput_settings(config: pytest.Config) -> ThroughputSettings:
    return config.stash[THROUGHPUT_SETTINGS_KEY]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)  # after the lead plugin has stashed its Settings
def pytest_configure(config: pytest.Config) -> None:
    from speedbench_plugin.plugin import SETTINGS_KEY
    from speedbench_plugin.throughput.report import ThroughputReport

    settings = config.stash[SETTINGS_KEY]
    tp_settings = ThroughputSettings.from_config(config, settings.num_requests, dict(settings.engine_args))
    config.stash[THROUGHPUT_SETTINGS_KEY] = tp_settings
    changes: dict[str, Any] = {}
    if tp_settings.draft_lengths:
        # The lead plugin parametrizes sb_engine by Settings.drafters; the sweep widens that list.
        changes["drafters"] = expand_drafters(settings.drafters, tp_settings.draft_lengths)
    if changes:
        config.stash[SETTINGS_KEY] = dataclasses.replace(settings, **changes)
    config.pluginmanager.register(ThroughputReport(config), "speedbench-throughput-report")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if THROUGHPUT_SETTINGS_KEY not in metafunc.config.stash:
        return
    tp = throughput_settings(metafunc.config)
    if "tp_bucket" in metafunc.fixturenames:
        metafunc.parametrize("tp_bucket", tp.buckets, ids=[f"b{b}" for b in tp.buckets])
    if "tp_tier" in metafunc.fixturenames:
        metafunc.parametrize("tp_tier", tp.tiers)
    if "tp_family" in metafunc.fixturenames:
        from speedbench_plugin.plugin import settings_of

        families = {}
        for drafter in settings_of(metafunc.config).drafters:
            if drafter.enabled:
                families.setdefault((drafter.method, drafter.model, drafter.options), drafter)
        specs = list(families.values())
        metafunc.parametrize("tp_family", specs, ids=[d.with_k(1).id.replace("_k1", "") for d in specs] or None)


def _param(item: pytest.Item, name: str) -> Any:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get(name) if callspec is not None else None


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by session-scoped parameters
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The step profile runs once, with the ``none`` drafter; the dynamic-table validation needs the
    finished sweep, so it runs last, grouped by table so each engine starts once."""
    profile_extra = [i for i in items if getattr(i, "originalname", "") == PROFILE_TEST
                     and getattr(_param(i, "sb_engine"), "enabled", False)]
    if profile_extra:
        config.hook.pytest_deselected(items=profile_extra)
        items[:] = [i for i in items if i not in profile_extra]

    def order(item: pytest.Item) -> tuple:
        if getattr(item, "originalname", "") != DYNAMIC_TEST:
            return (0,)
        family = _param(item, "tp_family")
        return (1, getattr(family, "id", ""), _param(item, "tp_bucket") or 0, _param(item, "tp_tier") or "")

    items.sort(key=order)


@pytest.fixture(scope="session")
def tp_settings(pytestconfig: pytest.Config) -> ThroughputSettings:
    return throughput_settings(pytestconfig)


@pytest.fixture(scope="session")
def tp_prompt_cache() -> dict[tuple[int, str], list[Any]]:
    return {}


@pytest.fixture
def tp_prompts(tp_bucket: int, tp_tier: str, tp_settings: ThroughputSettings, sb_model: str, sb_settings: Any,
               tp_prompt_cache: dict) -> list[Any]:
    """Exact-length prompts for this (bucket, tier), built into the cache on first use: enough for
    ``per_cell`` and for the highest concurrency (a case never runs fewer prompts than its load)."""
    from speedbench_plugin.data import DataUnavailable, load_throughput, plan_buckets
    from speedbench_plugin.data.throughput import build_throughput

    key = (tp_bucket, tp_tier)
    if key not in tp_prompt_cache:
        _, skipped = plan_buckets(sb_model, [tp_bucket], sb_settings.max_tokens)
        if skipped:
            pytest.skip(f"speedbench: {skipped[0].reason}")
        wanted = max(tp_settings.per_cell, *sb_settings.concurrency)
        try:
            prompts = load_throughput(sb_model, [tp_bucket], [tp_tier], wanted, sb_settings.max_tokens)
        except DataUnavailable as exc:
            print(f"\nspeedbench: {exc}; building it now")
            build_throughput(sb_model, buckets=[tp_bucket], per_cell=max(wanted, 32), progress=False)
            prompts = load_throughput(sb_model, [tp_bucket], [tp_tier], wanted, sb_settings.max_tokens)
        tp_prompt_cache[key] = prompts
    return tp_prompt_cache[key]
