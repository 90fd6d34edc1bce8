"""pytest plugin for the throughput benches: options, the draft-length expansion, bucket/tier
parametrization, the fixtures the benches call, the per-case ``throughput`` section, and the
sweep report. Loaded through the ``speedbench_throughput`` pytest11 entry point.

The dynamic-SD table is validated in a second phase fed by a file the sweep wrote
(``--speedbench-dynamic-table results/<run>/dynamic_tables.json``), so no test reads another
test's results and the validation runs under pytest-xdist like any case.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin import options as o
from speedbench_plugin.settings import SETTINGS_KEY
from speedbench_plugin.throughput.settings import (
    DYNAMIC_TABLE,
    OPTIONS,
    THROUGHPUT_SETTINGS_KEY,
    ThroughputSettings,
    expand_drafters,
    throughput_settings,
)

if TYPE_CHECKING:
    from speedbench_plugin.record import MeasuredRound, Record
    from speedbench_plugin.throughput.case import DynamicCase, ProfileRun, ThroughputCase

DYNAMIC_TEST = "test_dynamic_table"
PROFILE_TEST = "test_step_profile"
def pytest_addoption(parser: pytest.Parser) -> None:
    o.add_options(parser, OPTIONS)


@pytest.hookimpl(trylast=True)  # after the lead plugin has stashed its Settings
def pytest_configure(config: pytest.Config) -> None:
    from speedbench_plugin.throughput.report import ThroughputReport

    settings = config.stash[SETTINGS_KEY]
    tp_settings = ThroughputSettings.from_config(config, settings.num_requests)
    config.stash[THROUGHPUT_SETTINGS_KEY] = tp_settings
    if tp_settings.draft_lengths:
        # The lead plugin parametrizes sb_engine by Settings.drafters; the sweep widens that list.
        config.stash[SETTINGS_KEY] = dataclasses.replace(
            settings, drafters=expand_drafters(settings.drafters, tp_settings.draft_lengths))
    config.pluginmanager.register(ThroughputReport(config), "speedbench-throughput-report")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if THROUGHPUT_SETTINGS_KEY not in metafunc.config.stash:
        return
    tp = throughput_settings(metafunc.config)
    if "tp_dynamic_entry" in metafunc.fixturenames:
        metafunc.parametrize("tp_dynamic_entry", list(tp.dynamic), ids=[e.id for e in tp.dynamic])
        return
    if "tp_bucket" in metafunc.fixturenames:
        metafunc.parametrize("tp_bucket", tp.buckets, ids=[f"b{b}" for b in tp.buckets])
    if "tp_tier" in metafunc.fixturenames:
        metafunc.parametrize("tp_tier", tp.tiers)


def _param(item: pytest.Item, name: str) -> Any:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get(name) if callspec is not None else None


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by session-scoped parameters
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The step profile runs once, with the ``none`` drafter; the dynamic-table validation is the
    second phase: with ``--speedbench-dynamic-table`` only it runs, without it it does not."""
    tp = throughput_settings(config)
    drop = [i for i in items if getattr(i, "originalname", "") == PROFILE_TEST
            and getattr(_param(i, "sb_engine"), "enabled", False)]
    if tp.dynamic:
        drop += [i for i in items if getattr(i, "originalname", "") != DYNAMIC_TEST and i.get_closest_marker("throughput")]
    else:
        drop += [i for i in items if getattr(i, "originalname", "") == DYNAMIC_TEST]
    drop = list(dict.fromkeys(drop))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i not in drop]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    tp = throughput_settings(config)
    if tp.dynamic:
        return [(f"speedbench throughput: validating {len(tp.dynamic)} dynamic-SD table(s) from "
                f"--{DYNAMIC_TABLE.name} (the sweep's own cases are not re-run)")]
    if tp.draft_lengths:
        return [("speedbench throughput: draft-length sweep; the emitted dynamic-SD tables are validated by a second run "
                f"with --{DYNAMIC_TABLE.name} results/<run>/dynamic_tables.json (make throughput does both)")]
    return None


# --- fixtures the benches call ---------------------------------------------------------------


@pytest.fixture(scope="session")
def tp_settings(pytestconfig: pytest.Config) -> ThroughputSettings:
    return throughput_settings(pytestconfig)


@pytest.fixture(scope="session")
def tp_prompt_cache() -> dict[tuple[int, str], list[Any]]:
    return {}


@pytest.fixture
def tp_prompts(tp_bucket: int, tp_tier: str, tp_settings: ThroughputSettings, sb_model: str, sb_settings: Any,
               tp_prompt_cache: dict[tuple[int, str], list[Any]]) -> list[Any]:
    """Exact-length prompts for this (bucket, tier), built into the cache on first use: enough for
    ``per_cell`` and for the highest concurrency (a case never runs fewer prompts than its load)."""
    from speedbench_plugin.throughput.case import prompts_for

    return prompts_for(tp_prompt_cache, tp_bucket, tp_tier, tp_settings.per_cell, sb_model, sb_settings)


@pytest.fixture
def tp_case(sb_case: Any) -> ThroughputCase:
    from speedbench_plugin.throughput.case import ThroughputCase

    return ThroughputCase(sb_case)


@pytest.fixture
def tp_profile(request: pytest.FixtureRequest, sb_engine: Any, sb_tokenizer: Any) -> ProfileRun:
    from speedbench_plugin.throughput.case import ProfileRun

    return ProfileRun(request.node, sb_engine, sb_tokenizer)


@pytest.fixture(scope="session")
def tp_dynamic_engines() -> Iterator[dict[str, Any]]:
    """At most one dynamic-table engine alive at a time, keyed by drafter and table."""
    live: dict[str, Any] = {}
    yield live
    for host in live.values():
        host.close()


@pytest.fixture
def tp_dynamic(request: pytest.FixtureRequest, benchmark: Any, sb_settings: Any, sb_model: str, sb_tokenizer: Any,
               tp_dynamic_engines: dict[str, Any], tp_prompt_cache: dict[tuple[int, str], list[Any]],
               tp_settings: ThroughputSettings) -> DynamicCase:
    from speedbench_plugin.throughput.case import DynamicCase

    return DynamicCase(request.node, benchmark, sb_settings, sb_model, sb_tokenizer, tp_dynamic_engines,
                       tp_prompt_cache, tp_settings.per_cell)


# --- the per-case section ---------------------------------------------------------------------


def pytest_speedbench_update_record(config: pytest.Config, record: Record, rounds: Sequence[MeasuredRound]) -> dict[str, Any] | None:
    """Decode steps rebuilt from the chunk timestamps of each round (see throughput/steps.py)."""
    if record.case.split != "throughput":
        return None
    from speedbench_plugin.throughput.steps import throughput_section

    mode = record.engine.get("stream_mode") or {}
    if mode.get("mode") == "coalesced":  # a chunk is several steps: clusters of chunk arrivals are not steps
        return {"throughput": {"decode_goodput": None, "steps_reconstructed": 0, "pure_decode_steps": 0,
                               "split_clusters": 0, "decode_steps": [],
                               "steps_unavailable": f"coalesced stream (stream_interval={mode.get('stream_interval')}): "
                                                    "--speedbench-engine-args stream_interval=1 for the step profile"}}
    return {"throughput": throughput_section(rounds, record.case.k)}

