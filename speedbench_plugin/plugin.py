"""The pytest plugin: options, parametrization, the session engine fixture, records on reports."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from speedbench_plugin import hookspecs, options
from speedbench_plugin.case import RECORD_KEY, CaseRunner, EngineUnderTest
from speedbench_plugin.reports import REPORT_PROPERTY
from speedbench_plugin.settings import Settings

SETTINGS_KEY = pytest.StashKey[Settings]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SETTINGS_KEY] = Settings.from_config(config)
    from speedbench_plugin.reports import ReportsPlugin

    config.pluginmanager.register(ReportsPlugin(config), "speedbench-reports")


def settings_of(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS_KEY]


@pytest.hookimpl(tryfirst=True)  # engine and drafter lead the test id: test_x[vllm-ngram_k3-coding]
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    settings = settings_of(metafunc.config)
    if "sb_engine" in metafunc.fixturenames:
        metafunc.parametrize(
            "sb_engine",
            list(settings.drafters),
            indirect=True,
            scope="session",
            ids=[f"{settings.engine}-{d.id}" for d in settings.drafters],
        )
    sweep = len(settings.concurrency) > 1 or metafunc.definition.get_closest_marker("throughput") is not None
    if "sb_concurrency" in metafunc.fixturenames and sweep:
        metafunc.parametrize("sb_concurrency", list(settings.concurrency), ids=[f"c{c}" for c in settings.concurrency])


@pytest.fixture(scope="session")
def sb_settings(pytestconfig: pytest.Config) -> Settings:
    return settings_of(pytestconfig)


@pytest.fixture
def sb_concurrency(sb_settings: Settings) -> int:
    """The single concurrency when no sweep is asked for (a sweep parametrizes this name)."""
    return sb_settings.concurrency[0]


@pytest.fixture(scope="session")
def sb_model(sb_settings: Settings) -> str:
    """The target model directory: the option, or the embedded model (converted on first use)."""
    if sb_settings.model:
        return sb_settings.model
    from speedbench_plugin.models import ModelUnavailable, embedded_model

    try:
        return str(embedded_model())
    except ModelUnavailable as exc:
        pytest.exit(f"speedbench: {exc}", returncode=4)


@pytest.fixture(scope="session")
def sb_model_sha(sb_model: str) -> str:
    from speedbench_plugin.models import model_fingerprint

    return model_fingerprint(sb_model)


@pytest.fixture(scope="session")
def sb_tokenizer(sb_model: str):
    from speedbench_plugin.prompts import ChatTokenizer

    return ChatTokenizer(sb_model)


def resolve_drafter(drafter: Any) -> Any:
    """Give an embedded ``draft`` drafter its model path (first ``layers`` layers of SmolLM2)."""
    if drafter.method == "draft" and not drafter.model:
        from speedbench_plugin.drafters import DrafterSpec
        from speedbench_plugin.models import DEFAULT_DRAFT_LAYERS, draft_model

        path = draft_model(drafter.option("layers", DEFAULT_DRAFT_LAYERS))
        return DrafterSpec(drafter.method, drafter.k, str(path), drafter.options)
    return drafter


@pytest.fixture(scope="session")
def sb_engine(
    request: pytest.FixtureRequest, sb_settings: Settings, sb_model: str, sb_model_sha: str, sb_tokenizer: Any
) -> Iterator[EngineUnderTest]:
    """One started engine per (engine, drafter), shared by every case that uses it."""
    from speedbench_plugin.engines import EngineConfig, EngineError, UnknownEngine, create_engine
    from speedbench_plugin.models import ModelUnavailable
    from speedbench_plugin.runner import EngineHost

    drafter = request.param
    try:
        resolved = resolve_drafter(drafter)
        config = EngineConfig(sb_model, resolved, dict(sb_settings.engine_args), sb_settings.endpoint)
        engine = create_engine(sb_settings.engine, config)
    except UnknownEngine as exc:
        pytest.exit(str(exc), returncode=4)
    except (EngineError, ModelUnavailable, ValueError) as exc:  # rejected before starting
        pytest.fail(f"engine {sb_settings.engine} with drafter {drafter}: {exc}", pytrace=False)
    host = EngineHost(engine)
    try:
        host.start()
    except Exception as exc:  # noqa: BLE001 - every case of this engine errors with this message
        host.close()
        pytest.fail(f"engine {sb_settings.engine} with drafter {drafter} failed to start: {exc}", pytrace=False)
    try:
        _warm_up(host, sb_tokenizer)
        yield EngineUnderTest(host, sb_settings, drafter, sb_model, sb_model_sha, sb_tokenizer)
    finally:
        host.close()


WARMUP_PROMPTS = ("Say hello.", "Count from one to ten.")


def _warm_up(host: Any, tokenizer: Any) -> None:
    """A few short requests before measuring: the first passes after start run at half speed."""
    from speedbench_plugin.engines.base import Sampling
    from speedbench_plugin.runner import WorkItem, run_round

    items = [WorkItem(f"warmup{i}", "warmup", (text,)) for i, text in enumerate(WARMUP_PROMPTS)]
    warm = host.run(run_round(host.engine, tokenizer, items, Sampling(max_tokens=32), concurrency=1))
    if warm.errors:
        pytest.fail(f"engine warm-up failed: {warm.errors[0]}", pytrace=False)


@pytest.fixture
def sb_case(request: pytest.FixtureRequest, benchmark: Any, sb_engine: EngineUnderTest) -> CaseRunner:
    return CaseRunner(request.node, benchmark, sb_engine)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if call.when == "call" and RECORD_KEY in item.stash:
        # user_properties travel with the report, so records survive pytest-xdist.
        report.user_properties.append((REPORT_PROPERTY, item.stash[RECORD_KEY]))
    return report

