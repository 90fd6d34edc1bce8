"""The pytest plugin: options, parametrization, the session engine fixture, records on reports."""
from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin import devices, hookspecs, mlflow_export, redaction
from speedbench_plugin import options as o
from speedbench_plugin.case import RECORD_KEY, CaseRunner, EngineUnderTest
from speedbench_plugin.engine_start import resolve_drafter, start_engine
from speedbench_plugin.reports import REPORT_PROPERTY, ReportsPlugin
from speedbench_plugin.settings import OPTIONS, SETTINGS_KEY, Settings, settings_of
from speedbench_plugin.telemetry import plugin as telemetry

if TYPE_CHECKING:
    from speedbench_plugin.prompts import ChatTokenizer
    from speedbench_plugin.record import Record
    from speedbench_plugin.runner import EngineHost

__all__ = ["SETTINGS_KEY", "resolve_drafter", "settings_of", "start_engine"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    o.add_options(parser, OPTIONS)
    o.add_options(parser, devices.OPTIONS)
    o.add_options(parser, telemetry.OPTIONS)
    o.add_options(parser, mlflow_export.OPTIONS)


def pytest_configure(config: pytest.Config) -> None:
    settings = Settings.from_config(config)
    config.stash[SETTINGS_KEY] = settings
    redaction.register_endpoint(settings.endpoint)
    reports = ReportsPlugin(config)
    if not hasattr(config, "workerinput"):
        reports.check_writable()
    config.pluginmanager.register(reports, "speedbench-reports")
    telemetry.interval(config)  # a bad interval is a usage error now, not a failure of every case
    config.pluginmanager.register(telemetry, "speedbench-telemetry")
    config.pluginmanager.register(mlflow_export, "speedbench-mlflow")
    devices.register(config)  # pins this process's GPUs (CUDA_VISIBLE_DEVICES) before any engine starts


def pytest_collection_finish(session: pytest.Session) -> None:
    """Below the session header, once cases are collected: the in-process vLLM engine's stream mode
    for each drafter, and why (asked of the installed vLLM; sessions without vLLM cases skip it)."""
    settings = session.config.stash.get(SETTINGS_KEY, None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if settings is None or settings.engine != "vllm" or reporter is None or not any(
            "sb_engine" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    from speedbench_plugin.engines import EngineConfig, EngineError
    from speedbench_plugin.engines.vllm import probe_vllm, stream_mode

    try:
        install = probe_vllm()
    except EngineError:
        return  # the engine's start says why
    for drafter in settings.drafters:
        mode = stream_mode(EngineConfig("", drafter, dict(settings.engine_args)), install)
        interval = f" (stream_interval={mode.stream_interval})" if mode.stream_interval else ""
        reporter.write_line(f"speedbench stream mode, {drafter}: {mode.mode}{interval}: {mode.reason}")


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
def sb_tokenizer(sb_model: str) -> ChatTokenizer:
    from speedbench_plugin.prompts import ChatTokenizer

    return ChatTokenizer(sb_model)


def _identity(model: str, host: EngineHost) -> tuple[str, str]:
    from speedbench_plugin.identity import local_identity, served_identity

    local = local_identity(model)
    served = host.engine.describe().get("served_model")
    identity = served_identity(served, local) if isinstance(served, dict) else local
    return identity.sha, identity.method


@pytest.fixture(scope="session")
def sb_engine(
    request: pytest.FixtureRequest, sb_settings: Settings, sb_model: str, sb_tokenizer: ChatTokenizer
) -> Iterator[EngineUnderTest]:
    """One started engine per (engine, drafter), shared by every case that uses it; checked after
    a case with failures and restarted for the next case when it stopped answering."""
    from speedbench_plugin.supervisor import EngineSupervisor

    drafter = request.param
    pinned = devices.pinning(request.config)
    if pinned.problem:
        pytest.fail(f"speedbench devices: {pinned.problem}", pytrace=False)

    def started() -> EngineHost:
        host = start_engine(sb_settings, sb_model, drafter)
        try:
            _warm_up(host, sb_tokenizer, sb_settings)
        except BaseException:
            host.close(timeout=30)
            raise
        return host

    supervisor = EngineSupervisor(sb_settings, f"engine {sb_settings.engine} with drafter {drafter}", started)
    try:
        host = supervisor.start()
        sha, how = _identity(sb_model, host)
        yield EngineUnderTest(host, sb_settings, drafter, sb_model, sha, how, sb_tokenizer, devices=pinned.label,
                              supervisor=supervisor)
    finally:
        supervisor.close()


WARMUP_PROMPTS = ("Say hello.", "Count from one to ten.")


def _warm_up(host: EngineHost, tokenizer: ChatTokenizer, settings: Settings) -> None:
    """A few short requests before measuring: the first passes after start run at half speed."""
    from speedbench_plugin.case import host_limits, request_limits
    from speedbench_plugin.engines.base import Sampling
    from speedbench_plugin.runner import WorkItem, run_round

    items = [WorkItem(f"warmup{i}", "warmup", (text,)) for i, text in enumerate(WARMUP_PROMPTS)]
    warm = host.run(run_round(host.engine, tokenizer, items, Sampling(max_tokens=32), concurrency=1,
                              limits=request_limits(settings, "engine warm-up")),
                    what="engine warm-up", **host_limits(settings))
    errors = [r.stream.error for r in warm.requests if r.stream.error]
    if errors:
        pytest.fail(f"engine warm-up failed: {errors[0]}", pytrace=False)


@pytest.fixture
def sb_case(request: pytest.FixtureRequest, benchmark: Any, sb_engine: EngineUnderTest) -> CaseRunner:
    """The case's runner, on an engine that answers: restarted first if the last case left it down;
    an engine that cannot be restarted errors this case with the reason, at once."""
    from speedbench_plugin.supervisor import EngineDown

    if sb_engine.supervisor is not None:
        down = None
        try:
            sb_engine.host = sb_engine.supervisor.ensure_up()
        except EngineDown as exc:
            down = str(exc)
        if down is not None:  # failed outside the handler: the reason alone, not a chain of exceptions
            pytest.fail(down, pytrace=False)
    return CaseRunner(request.node, benchmark, sb_engine)


@pytest.fixture
def sb_cross_engine(benchmark: Any, sb_engine: EngineUnderTest) -> Any:
    from speedbench_plugin.cross_engine import CrossEngineCheck

    return CrossEngineCheck(sb_engine, benchmark)


def pytest_speedbench_check(config: pytest.Config, record: Record) -> list[str] | None:
    """Under ``--speedbench-strict-fidelity``, a gap between stream and counters that neither
    end-of-request cuts nor merged steps explain fails the case."""
    if not settings_of(config).strict_fidelity:
        return None
    from speedbench_plugin.metrics import UNEXPLAINED

    return [f"fidelity ({name}, {check.counter_source}): {check.explanation}"
            for name, check in record.fidelity.items() if check.verdict == UNEXPLAINED] or None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call" and RECORD_KEY in item.stash:
        # user_properties travel with the report, so records survive pytest-xdist.
        report.user_properties.append((REPORT_PROPERTY, item.stash[RECORD_KEY].to_json()))
    _scrub_report(report)
    return report


def _scrub_report(report: pytest.TestReport) -> None:
    """No secret leaves through a report: failure text and tracebacks (terminal, JUnit XML),
    captured output, user properties (JUnit XML, xdist)."""
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        if redaction.contains_secret(text):
            report.longrepr = redaction.scrub_text(text)
    report.sections = [(title, redaction.scrub_text(content)) for title, content in report.sections]
    report.user_properties = [(name, redaction.scrub(value)) for name, value in report.user_properties]
