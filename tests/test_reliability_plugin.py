"""Reliability through the plugin, on FakeEngine (a synthetic engine: no model runs). It stands in
only for what a real engine cannot do on demand: hang for good (a request that never yields
again, an engine that stays wedged until restarted, a start that never returns). The journal and
``--speedbench-resume`` are tested here on complete runs; kills and signals are in test_faults_*.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from realservers import import_before_inprocess_runs

from speedbench_plugin.journal import read_journal

CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

def items(label):
    return [WorkItem(f"{label}-{i}", label, prompt_ids=tuple(range(5 + i, 30))) for i in range(3)]

@pytest.mark.parametrize("label", LABELS)
def test_case(sb_case, label):
    sb_case.run(items(label), split="qualitative", labels={"category": label}, concurrency=1)
"""


@pytest.fixture(autouse=True, scope="module")
def _imported_before_inprocess_runs(tiny_model_dir: str) -> None:
    import_before_inprocess_runs(tiny_model_dir)


def _run(pytester: pytest.Pytester, model: str, *args: str, labels: tuple[str, ...] = ("alpha", "beta", "gamma"),
         drafters: tuple[str, ...] = ("ngram:k=2",)) -> tuple[pytest.RunResult, Path]:
    pytester.makepyfile(test_cases=f"LABELS = {list(labels)!r}\n" + CASES)
    run_dir = pytester.path / "run"
    drafter_args = [arg for d in drafters for arg in ("--speedbench-drafter", d)]
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "fake", f"--speedbench-model={model}", *drafter_args,
        "--speedbench-max-tokens", "16", f"--speedbench-run-dir={run_dir}", "-p", "no:randomly", *args,
    )
    return result, run_dir


def _records(run_dir: Path) -> dict[str, dict]:
    document = json.loads((run_dir / "results.json").read_text())
    return {b["name"]: b["extra_info"]["speedbench"] for b in document["benchmarks"]}


# --- hangs, checks, restarts -------------------------------------------------------------------


def test_a_hung_request_fails_its_case_and_the_wedged_engine_is_restarted(pytester: pytest.Pytester,
                                                                          tiny_model_dir: str) -> None:
    result, run_dir = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "hang_request=beta-2",
                           "--speedbench-engine-args", "hang_after=4", "--speedbench-engine-args", "wedge=true",
                           "--speedbench-request-timeout", "1", "--speedbench-engine-check-timeout", "1")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    # The message names the case, the request and the limit.
    assert ("case test_case[fake-ngram_k2-beta], request beta-2-t0-r0: no token for 1 s "
            "(--speedbench-request-timeout)") in out
    assert "engine check: a 2-token check request failed" in out and "restarted for the remaining cases" in out
    records = _records(run_dir)
    beta = records["test_case[fake-ngram_k2-beta]"]
    hung = next(row for row in beta["requests"] if row["question_id"] == "beta-2")
    assert hung["error"] and hung["output_tokens"] >= 4  # what streamed before the hang is kept
    assert [row["output_tokens"] for row in beta["requests"] if row["question_id"] != "beta-2"] == [16, 16]
    assert "restarted" in beta["sections"]["engine_check"]
    # After the restart the next case runs on a fresh engine, whole.
    gamma = records["test_case[fake-ngram_k2-gamma]"]
    assert gamma["outcome"] == "passed" and not gamma["errors"]


def test_without_restarts_left_the_remaining_cases_error_with_the_reason(pytester: pytest.Pytester,
                                                                         tiny_model_dir: str) -> None:
    result, _ = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "hang_request=alpha-0",
                     "--speedbench-engine-args", "wedge=true", "--speedbench-request-timeout", "1",
                     "--speedbench-engine-check-timeout", "1", "--speedbench-engine-restarts", "0")
    result.assert_outcomes(failed=1, errors=2)
    out = result.stdout.str()
    assert "ERROR at setup of test_case[fake-ngram_k2-beta]" in out
    assert out.count("no restart is left (--speedbench-engine-restarts 0)") >= 3  # the case and both errors


def test_an_engine_whose_start_hangs_errors_every_case(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, _ = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "hang_start=true",
                     "--speedbench-engine-start-timeout", "1", labels=("alpha", "beta"))
    result.assert_outcomes(errors=2)
    assert "failed to start: engine fake start did not finish within 1 s (--speedbench-engine-start-timeout)" in (
        result.stdout.str())


def test_an_engine_that_raises_on_start_errors_every_case(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    """A real engine and a real failure: the openai engine pointed at a port where nothing listens."""
    from realservers import free_port

    pytester.makepyfile(test_cases="LABELS = ['alpha', 'beta']\n" + CASES)
    # In a subprocess: an in-process run would drop the HTTP modules it imports lazily, and the
    # next test's httpx would no longer recognise its own transport's errors.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "openai", f"--speedbench-model={tiny_model_dir}",
        f"--speedbench-endpoint=http://127.0.0.1:{free_port()}", "--speedbench-drafter", "none",
    )
    result.assert_outcomes(errors=2)
    assert result.stdout.str().count("engine openai with drafter none failed to start: endpoint") >= 2
    assert "unreachable" in result.stdout.str()


def test_a_healthy_engine_is_checked_but_not_restarted(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    """One failing request (an engine error) fails its case; the engine still answers, so it stays."""
    result, run_dir = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "fail_request=alpha-2")
    result.assert_outcomes(passed=2, failed=1)
    alpha = _records(run_dir)["test_case[fake-ngram_k2-alpha]"]
    assert "engine_check" not in alpha["sections"]
    assert "1 request(s) failed (2 measured)" in result.stdout.str()


# --- the journal and resuming ------------------------------------------------------------------


def test_every_finished_case_is_journaled_and_the_outputs_come_from_the_journal(pytester: pytest.Pytester,
                                                                                tiny_model_dir: str) -> None:
    own = pytester.path / "own.json"
    result, run_dir = _run(pytester, tiny_model_dir, f"--speedbench-json={own}")
    result.assert_outcomes(passed=3)
    lines = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["session", "record", "record", "record", "end"]
    assert lines[-1]["partial"] is False and lines[0]["fingerprint"]["options"]["speedbench_max_tokens"] == "16"
    journal = read_journal(run_dir / "journal.jsonl")
    records = _records(run_dir)
    # results.json holds the journal's records (with the session's sections added), and the same as --speedbench-json.
    assert {r["case"]["nodeid"] for r in records.values()} == set(journal.records)
    for nodeid, record in journal.records.items():
        final = next(r for r in records.values() if r["case"]["nodeid"] == nodeid)
        assert final["requests"] == record["requests"] and final["acceptance"] == record["acceptance"]
    assert json.loads(own.read_text())["benchmarks"] == json.loads((run_dir / "results.json").read_text())["benchmarks"]
    assert json.loads(own.read_text())["partial"] is False


def test_the_controller_journals_the_cases_of_xdist_workers(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_cases="LABELS = ['alpha', 'beta', 'gamma', 'delta']\n" + CASES)
    run_dir = pytester.path / "run"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "fake", f"--speedbench-model={tiny_model_dir}",
        "--speedbench-drafter", "ngram:k=2", "--speedbench-max-tokens", "16", f"--speedbench-run-dir={run_dir}",
        "-n", "2",
    )
    result.assert_outcomes(passed=4)
    journal = read_journal(run_dir / "journal.jsonl")
    assert journal.sessions == 1 and len(journal.records) == 4 and journal.ended_partial is False
    assert sorted(_records(run_dir)) == sorted(r["case"]["case_id"] for r in journal.records.values())


def test_resume_runs_only_the_missing_cases_and_writes_complete_outputs(pytester: pytest.Pytester,
                                                                        tiny_model_dir: str) -> None:
    result, run_dir = _run(pytester, tiny_model_dir)
    result.assert_outcomes(passed=3)
    complete = _records(run_dir)
    # As a kill after the second case leaves it: the third record and the end line missing.
    journal = run_dir / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:3]) + "\n")
    (run_dir / "results.json").unlink()
    again, _ = _run(pytester, tiny_model_dir, f"--speedbench-resume={run_dir}", "--speedbench-run-dir=")
    again.assert_outcomes(passed=1)
    assert "2 deselected" in again.stdout.str()
    assert "resumed" in again.stdout.str() and "2 case(s) from its journal, 1 run now" in again.stdout.str()
    resumed = _records(run_dir)
    assert sorted(resumed) == sorted(complete)
    for name, record in complete.items():  # FakeEngine is deterministic: the same counts, case by case
        assert _counts(resumed[name]) == _counts(record)


TIMINGS = {"ttft_s", "tpot_s", "user_tps", "decode_time_s"}


def _counts(record: dict) -> list[dict]:
    """A record's requests without their timings: what two runs of one configuration share."""
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in record["requests"]]


def test_resume_refuses_a_journal_of_another_configuration(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, run_dir = _run(pytester, tiny_model_dir, labels=("alpha",))
    result.assert_outcomes(passed=1)
    pytester.makepyfile(test_cases="LABELS = ['alpha']\n" + CASES)
    refused = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "fake", f"--speedbench-model={tiny_model_dir}",
        "--speedbench-drafter", "ngram:k=3", "--speedbench-max-tokens", "24", f"--speedbench-resume={run_dir}",
    )
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    err = refused.stderr.str()
    assert "the journal was written by a different configuration" in err
    assert "--speedbench-max-tokens: journal '16', this run '24'" in err
    assert "--speedbench-drafter: journal ['ngram:k=2'], this run ['ngram:k=3']" in err


def test_resume_needs_a_journal(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytester.makepyfile(test_cases="LABELS = ['alpha']\n" + CASES)
    empty = pytester.mkdir("empty")
    refused = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--speedbench-engine", "fake",
                                           f"--speedbench-model={tiny_model_dir}", f"--speedbench-resume={empty}")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    assert "no journal.jsonl there" in refused.stderr.str()
