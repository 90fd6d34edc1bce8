"""The plugin end to end through pytester, on FakeEngine (a synthetic engine: no model runs).

FakeEngine stands in where a real engine cannot produce the condition on demand: merged chunks,
drafts cut at the end with or without a per-step record, a counter bug, slow counters.
"""
from __future__ import annotations

import json
import re

import pytest

CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

ITEMS = [WorkItem(f"q{i}", "demo", prompt_ids=tuple(range(5 + i))) for i in range(6)]

@pytest.mark.qualitative
@pytest.mark.parametrize("label", ["alpha", "beta"])
def test_case(sb_case, sb_concurrency, label):
    sb_case.run(ITEMS, split="qualitative", labels={"category": label}, concurrency=sb_concurrency)
"""


def _run(pytester: pytest.Pytester, model: str, *args: str, drafters: tuple[str, ...] = ("none", "ngram:k=3"),
         name: str = "results") -> tuple[pytest.RunResult, dict, dict]:
    """Runs the cases; returns the result, the --benchmark-json document and the --speedbench-json one."""
    pytester.makepyfile(test_cases=CASES)
    (pytester.path / "out").mkdir(exist_ok=True)
    bench, own = pytester.path / "out" / f"{name}.json", pytester.path / "out" / f"{name}-own.json"
    drafter_args = [arg for d in drafters for arg in ("--speedbench-drafter", d)]
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "fake", f"--speedbench-model={model}", *drafter_args,
        "--speedbench-max-tokens", "40", "--benchmark-json", str(bench), "--speedbench-json", str(own),
        f"--speedbench-run-dir={pytester.path / 'run'}", *args,
    )
    return result, json.loads(bench.read_text()), json.loads(own.read_text())


def _records(document: dict) -> dict[str, dict]:
    return {b["name"]: b["extra_info"]["speedbench"] for b in document["benchmarks"]}


def _table_al(stdout: str, label: str, drafter: str) -> str:
    """The AL cell of the printed table's row for (label, drafter)."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 6 and cells[1] == label and cells[2] == drafter:
            return cells[5]
    raise AssertionError(f"no table row for {label} {drafter}")


def test_one_record_in_every_output_with_speedups(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, bench, own = _run(pytester, tiny_model_dir)
    result.assert_outcomes(passed=4)
    records = _records(bench)
    assert sorted(records) == [
        "test_case[fake-ngram_k3-alpha]", "test_case[fake-ngram_k3-beta]",
        "test_case[fake-none-alpha]", "test_case[fake-none-beta]",
    ]
    # pytest-benchmark's JSON and the suite's own file hold the very same final records.
    assert records == _records(own)
    ngram = records["test_case[fake-ngram_k3-alpha]"]
    assert ngram["schema"] == 2 and ngram["case"]["k"] == 3 and ngram["case"]["category"] == "alpha"
    assert len(ngram["requests"]) == 6 and ngram["acceptance"]["output_tokens"] == 6 * 40
    assert all(len(row["prompt_sha256"]) == 64 for row in ngram["requests"])
    gain = ngram["sections"]["speedup_vs_none"]
    assert gain["baseline_case_id"] == "test_case[fake-none-alpha]"
    assert gain["output_tps"] == pytest.approx(
        ngram["speed"]["output_tps"] / records["test_case[fake-none-alpha]"]["speed"]["output_tps"])
    assert "speedup_vs_none" not in records["test_case[fake-none-alpha]"]["sections"]
    # FakeEngine's counters are exact: stream and counters agree to the token.
    assert ngram["fidelity"]["per_request"]["verdict"] == "exact"
    assert ngram["acceptance"]["histogram_source"] == "engine:fake:per_step"
    # The table prints the record's AL.
    assert _table_al(result.stdout.str(), "alpha", "ngram_k3") == f"{ngram['acceptance']['acceptance_length']:.2f}"
    # pytest-benchmark's timing stats sit beside the record in its own file.
    assert all("stats" in b for b in bench["benchmarks"])


def test_records_survive_xdist_with_one_schema(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytest.importorskip("xdist")
    result, bench, own = _run(pytester, tiny_model_dir, "-n", "2")
    result.assert_outcomes(passed=4)
    assert not (pytester.path / "results.json").exists()  # written where asked, nowhere else
    records = _records(bench)
    assert records == _records(own) and len(records) == 4
    assert records["test_case[fake-ngram_k3-beta]"]["sections"]["speedup_vs_none"]["output_tps"] > 0
    assert bench["speedbench_record_schema"] == 2


def test_merged_stream_without_per_step_record_is_flagged(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, bench, _ = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "merge_every=3",
                            "--speedbench-engine-args", "per_step_record=false")
    result.assert_outcomes(passed=4)
    records = _records(bench)
    none = records["test_case[fake-none-alpha]"]["acceptance"]
    # k = 0: every chunk of more than one token is a merge, and the stream's AL shows it.
    assert none["merged_chunks"] > 0 and none["stream_merged"] and none["acceptance_length"] > 1.0
    ngram = records["test_case[fake-ngram_k3-alpha]"]
    assert ngram["acceptance"]["histogram_source"] == "stream" and ngram["acceptance"]["stream_merged"]
    assert ngram["acceptance"]["acceptance_rate"] == ngram["counters"]["per_request"]["acceptance_rate"]
    stdout = result.stdout.str()
    assert _table_al(stdout, "alpha", "none") == f"{none['acceptance_length']:.2f}*"
    assert "the stream merged engine steps" in stdout and "overstate" in stdout


def test_per_step_record_is_used_and_the_stream_gap_explained(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, bench, _ = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "merge_every=3")
    result.assert_outcomes(passed=4)
    ngram = _records(bench)["test_case[fake-ngram_k3-alpha]"]
    acceptance = ngram["acceptance"]
    assert acceptance["histogram_source"] == "engine:fake:per_step"
    # Steps from the engine's own record: AL = 1 + accepted / steps, exactly; the stream overstates it.
    counters = ngram["counters"]["per_request"]
    assert acceptance["acceptance_length"] == pytest.approx(1 + counters["num_accepted_tokens"] / counters["num_drafts"])
    assert acceptance["acceptance_length_stream"] > acceptance["acceptance_length"]
    assert ngram["fidelity"]["per_request"]["verdict"] == "merged steps"


@pytest.mark.parametrize(("per_step", "verdict"), [("true", "exact"), ("false", "within the end-cut bound")])
def test_end_cuts_exact_or_bounded(pytester: pytest.Pytester, tiny_model_dir: str, per_step: str, verdict: str) -> None:
    result, bench, _ = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "cut_at_end=true",
                            "--speedbench-engine-args", "accept=0.95", "--speedbench-engine-args", f"per_step_record={per_step}",
                            drafters=("ngram:k=3",))
    result.assert_outcomes(passed=2)
    for record in _records(bench).values():
        check = record["fidelity"]["per_request"]
        assert check["accepted_tokens_counters"] > check["accepted_tokens_stream"]  # drafts were cut
        assert check["verdict"] == verdict
        assert check["end_cut_bound"] == 3 * 6  # k per request that ended inside a step
        if per_step == "true":
            assert check["accepted_cut_at_end"] == check["accepted_tokens_counters"] - check["accepted_tokens_stream"]


def test_unexplained_gap_warns_and_fails_under_strict(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    args = ("--speedbench-engine-args", "counter_bias=40", "--speedbench-engine-args", "per_step_record=false")
    result, bench, _ = _run(pytester, tiny_model_dir, *args, drafters=("ngram:k=3",))
    result.assert_outcomes(passed=2)
    assert all(r["fidelity"]["per_request"]["verdict"] == "unexplained" for r in _records(bench).values())
    result.stdout.fnmatch_lines(["*GAP: stream and counters disagree*"])
    strict, _, _ = _run(pytester, tiny_model_dir, *args, "--speedbench-strict-fidelity", drafters=("ngram:k=3",),
                        name="strict")
    strict.assert_outcomes(failed=2)
    strict.stdout.fnmatch_lines(["*fidelity (per_request, fake:per_request): counters - stream = *"])


def test_benchmark_times_the_workload_not_the_counters(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    """Counter reads that take 0.3 s must not reach pytest-benchmark's timing of a ~0.2 s round."""
    result, bench, _ = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "counter_delay_s=0.3",
                            "--speedbench-engine-args", "step_s=0.005", "--speedbench-rounds", "3",
                            drafters=("ngram:k=3",))
    result.assert_outcomes(passed=2)
    for entry in bench["benchmarks"]:
        wall = entry["extra_info"]["speedbench"]["speed"]["wall_time_s_rounds"]
        assert len(wall) == 3 and entry["stats"]["rounds"] == 3
        assert entry["stats"]["median"] == pytest.approx(sorted(wall)[1], rel=0.02)


def test_gate_messages_show_the_records_al(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    """On a merged stream the table, the JSON and the gate's message show one AL."""
    merged = ("--speedbench-engine-args", "merge_every=3", "--speedbench-engine-args", "per_step_record=false")
    base = pytester.path / "base.json"
    saved, _, _ = _run(pytester, tiny_model_dir, *merged, f"--speedbench-save-baseline={base}", drafters=("ngram:k=3",),
                       name="base")
    saved.assert_outcomes(passed=2)
    worse, bench, _ = _run(pytester, tiny_model_dir, *merged, "--speedbench-engine-args", "accept=0.2",
                           f"--speedbench-compare={base}", drafters=("ngram:k=3",), name="worse")
    worse.assert_outcomes(failed=2)
    baseline_al = _records(json.loads(base.read_text()))["test_case[fake-ngram_k3-alpha]"]["acceptance"]["acceptance_length"]
    current = _records(bench)["test_case[fake-ngram_k3-alpha]"]
    current_al = current["acceptance"]["acceptance_length"]
    stdout = worse.stdout.str()
    assert re.search(rf"REGRESSED AL {baseline_al:.3f} -> {current_al:.3f}", stdout)
    assert _table_al(stdout, "alpha", "ngram_k3") == f"{current_al:.2f}*"
    assert current["sections"]["comparison"]["status"] == "regressed"


def test_failed_request_fails_only_its_case(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, bench, _ = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "fail_request=q2")
    result.assert_outcomes(failed=4)  # every case holds q2; the others' metrics are still recorded
    result.stdout.fnmatch_lines(["*1 request(s) failed*", "*q2 turn 1: EngineError*"])
    for record in _records(bench).values():
        assert [row["question_id"] for row in record["requests"] if row["error"]] == ["q2"]
        assert record["acceptance"]["output_tokens"] == 5 * 40


def test_bad_drafter_spec_names_the_option(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytester.makepyfile(test_cases=CASES)
    result = pytester.runpytest_subprocess("--speedbench-engine", "fake", "--speedbench-drafter", "magic:k=3")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--speedbench-drafter 'magic:k=3': unknown method 'magic'*"])


def test_unknown_engine_lists_known_ones(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytester.makepyfile(test_cases=CASES)
    result = pytester.runpytest_subprocess("--speedbench-engine", "nope", f"--speedbench-model={tiny_model_dir}")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*--speedbench-engine 'nope' is not a known engine; known:*fake*vllm*"])


def test_engine_start_failure_fails_its_cases(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytester.makepyfile(test_cases=CASES)
    result = pytester.runpytest_subprocess(
        "--speedbench-engine", "fake", f"--speedbench-model={tiny_model_dir}",
        "--speedbench-engine-args", "fail_start=true",
    )
    result.stdout.fnmatch_lines(["*engine fake with drafter*failed to start*fail_start*"])
    assert result.ret != 0


def test_a_case_that_failed_to_start_is_named_with_its_cause_in_results_and_report(
        pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    """No record exists for a case whose engine refused to start: the cause still reaches the results
    file, the pytest-benchmark JSON, the report's warnings and the session's closing lines."""
    pytester.makepyfile(test_cases=CASES)
    result = pytester.runpytest_subprocess(
        "--speedbench-engine", "fake", f"--speedbench-model={tiny_model_dir}", "--speedbench-drafter", "none",
        "--speedbench-drafter", "ngram:k=3", "--speedbench-engine-args", "fail_start=ngram",
        "--speedbench-json", "own.json", "--benchmark-json", "bench.json", "--speedbench-report", "report.html",
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["speedbench: *test_case*ngram*failed before measuring (setup): *fail_start=ngram*"])
    for name in ("own.json", "bench.json"):
        document = json.loads((pytester.path / name).read_text())
        failures = document["failed_without_record"]
        assert len(failures) == 2 and all("ngram" in f["nodeid"] and f["when"] == "setup" for f in failures)
        assert all("start failure injected by fail_start=ngram" in f["error"] for f in failures)
        assert len([b for b in document["benchmarks"] if "ngram" in b["name"]]) == 0  # no record, no entry
    html = (pytester.path / "report.html").read_text()
    assert "failed before measuring" in html and "start failure injected by fail_start=ngram" in html


def test_missing_model_path_names_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cases=CASES)
    result = pytester.runpytest_subprocess("--speedbench-engine", "fake", "--speedbench-model=/no/such/model")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--speedbench-model '/no/such/model': no such model directory*"])


LONG_PROMPT = """
import pytest
from speedbench_plugin.runner import WorkItem

ITEMS = [
    WorkItem("short", "demo", ("Say hi.",)),
    WorkItem("huge", "demo", ("word " * 6000,)),
]

@pytest.mark.qualitative
def test_case(sb_case, sb_concurrency):
    sb_case.run(ITEMS, split="qualitative", labels={"category": "demo"}, concurrency=sb_concurrency)
"""


def test_prompt_beyond_context_is_named_and_the_rest_still_runs(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytester.makepyfile(test_cases=LONG_PROMPT)
    out = pytester.path / "sb.json"
    result = pytester.runpytest_subprocess(
        "--speedbench-engine", "fake", f"--speedbench-model={tiny_model_dir}", "--speedbench-drafter", "ngram:k=2",
        "--speedbench-max-tokens", "16", "--speedbench-json", str(out),
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*huge turn 1: PromptTooLong: prompt huge turn 1: * prompt tokens + 16 output tokens exceed*"])
    record = json.loads(out.read_text())["benchmarks"][0]["extra_info"]["speedbench"]
    assert [row["question_id"] for row in record["requests"] if not row["error"]] == ["short"]
    assert record["acceptance"]["output_tokens"] == 16


def test_ceiling_efficiency_and_client_cost_reach_the_record(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, bench, _ = _run(pytester, tiny_model_dir, "--speedbench-ceiling=on", "--speedbench-engine-args", "step_s=0.002")
    result.assert_outcomes(passed=4)
    for record in _records(bench).values():
        speed = record["speed"]
        assert speed["engine_ceiling_tps"] > 0 and speed["engine_ceiling_path"] == "fake engine, no streaming"
        assert speed["harness_efficiency"] == pytest.approx(speed["output_tps"] / speed["engine_ceiling_tps"])
        assert speed["client_cpu_us_per_output"] > 0 and speed["ceiling_cpu_us_per_output"] > 0
    _, bench_off, _ = _run(pytester, tiny_model_dir, name="off")  # auto: the qualitative split has none
    assert all(r["speed"]["engine_ceiling_tps"] is None for r in _records(bench_off).values())


def test_a_client_bound_case_is_flagged_and_its_speed_not_judged(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    """A slow chunk handler (FakeEngine's client_cost_s burns CPU on the event loop per chunk) makes
    the streamed figures fall behind the engine's own path: the case says so and the gate does not judge it."""
    pace = ("--speedbench-ceiling=on", "--speedbench-engine-args", "step_s=0.002", "--speedbench-rounds=6")
    base = pytester.path / "base.json"
    saved, _, _ = _run(pytester, tiny_model_dir, *pace, f"--speedbench-save-baseline={base}", drafters=("ngram:k=3",),
                       name="base")
    saved.assert_outcomes(passed=2)
    slow, bench, _ = _run(pytester, tiny_model_dir, *pace, "--speedbench-engine-args", "client_cost_s=0.01",
                          f"--speedbench-compare={base}", drafters=("ngram:k=3",), name="slow")
    slow.assert_outcomes(passed=2)  # not a regression: the engine did not get slower, the client did
    for record in _records(bench).values():
        assert record["speed"]["client_bound"] and record["speed"]["harness_efficiency"] < 0.9
        speed_verdicts = [m for m in record["sections"]["comparison"]["metrics"] if m["kind"] == "speed"]
        assert speed_verdicts and all(m["status"] == "not comparable" and "client-bound" in m["note"]
                                      for m in speed_verdicts)
    slow.stdout.fnmatch_lines(["*CLIENT-BOUND*"])


def test_an_unwritable_results_path_fails_before_any_case_runs(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytester.makepyfile(test_cases=CASES)
    blocker = pytester.path / "a-file"
    blocker.write_text("not a folder")
    result = pytester.runpytest_subprocess("--speedbench-engine", "fake", f"--speedbench-model={tiny_model_dir}",
                                           f"--speedbench-json={blocker / 'results.json'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: cannot write {blocker / 'results.json'}: *nothing was written*"])
    assert "passed" not in result.stdout.str()
