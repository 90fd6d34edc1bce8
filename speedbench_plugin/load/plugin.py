"""pytest plugin for serving load: options, the request-rate parametrization, the fixtures the load
and harness benches call, the per-case ``load`` section, the cross-case rate-sweep figures, and
the tables, CSV files and plots. Loaded through the ``speedbench_load`` pytest11 entry point."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin import options as o
from speedbench_plugin.load.settings import LOAD_SETTINGS_KEY, OPTIONS, LoadSettings, load_settings
from speedbench_plugin.settings import SETTINGS_KEY

if TYPE_CHECKING:
    from speedbench_plugin.load.harness import HarnessRun
    from speedbench_plugin.load.run import ClientPools, LoadCase
    from speedbench_plugin.record import MeasuredRound, Record

def rate_id(rate: float) -> str:
    return "rinf" if math.isinf(rate) else f"r{rate:g}"


def pytest_addoption(parser: pytest.Parser) -> None:
    o.add_options(parser, OPTIONS)


@pytest.hookimpl(trylast=True)  # after the lead plugin has stashed its Settings
def pytest_configure(config: pytest.Config) -> None:
    from speedbench_plugin.load.report import LoadReport

    settings = config.stash[SETTINGS_KEY]
    config.stash[LOAD_SETTINGS_KEY] = LoadSettings.from_config(config, settings.engine)
    config.pluginmanager.register(LoadReport(config), "speedbench-load-report")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ld_rate" in metafunc.fixturenames and LOAD_SETTINGS_KEY in metafunc.config.stash:
        rates = load_settings(metafunc.config).rates
        metafunc.parametrize("ld_rate", list(rates), ids=[rate_id(r) for r in rates])


# --- fixtures the benches call ---------------------------------------------------------------


@pytest.fixture(scope="session")
def ld_settings(pytestconfig: pytest.Config) -> LoadSettings:
    return load_settings(pytestconfig)


@pytest.fixture(scope="session")
def ld_pools() -> Iterator[ClientPools]:
    from speedbench_plugin.load.run import ClientPools

    pools = ClientPools()
    yield pools
    pools.close()


@pytest.fixture(scope="session")
def ld_prompt_cache() -> dict[int, dict[tuple[int, str], list[Any]]]:
    return {}


@pytest.fixture
def ld_case(sb_case: Any, ld_settings: LoadSettings, ld_pools: ClientPools,
            ld_prompt_cache: dict[int, dict[tuple[int, str], list[Any]]]) -> LoadCase:
    from speedbench_plugin.load.run import LoadCase

    return LoadCase(sb_case, ld_settings, ld_pools, ld_prompt_cache)


@pytest.fixture
def ld_concurrency_cap(sb_settings: Any, sb_concurrency: int) -> int | None:
    """The concurrency cap when the user set one (--speedbench-concurrency); open loop otherwise."""
    from speedbench_plugin.settings import CONCURRENCY

    return sb_concurrency if CONCURRENCY.name in sb_settings.explicit else None


@pytest.fixture
def ld_harness(request: pytest.FixtureRequest, benchmark: Any, ld_settings: LoadSettings) -> HarnessRun:
    from speedbench_plugin.load.harness import HarnessRun

    return HarnessRun(request.node, benchmark, ld_settings)


# --- the per-case section ----------------------------------------------------------------------


def pytest_speedbench_update_record(config: pytest.Config, record: Record, rounds: Sequence[MeasuredRound]
                                    ) -> dict[str, Any] | None:
    if not rounds or not all(r.client is not None for r in rounds):
        return None
    from speedbench_plugin.load.section import load_section

    return {"load": load_section(record, rounds, load_settings(config))}
