"""The plugin end to end through pytester, on FakeEngine (a synthetic engine: no model runs)."""
from __future__ import annotations

import json

import pytest

CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

ITEMS = [WorkItem(f"q{i}", "demo", prompt_ids=tuple(range(5 + i))) for i in range(4)]

@pytest.mark.qualitative
@pytest.mark.parametrize("label", ["alpha", "beta"])
def test_case(sb_case, sb_concurrency, label):
    sb_case.run(ITEMS, split="qualitative", labels={"category": label}, concurrency=sb_concurrency)
"""


def _run(pytester: pytest.Pytester, model: str, *args: str) -> tuple[pytest.RunResult, dict]:
    pytester.makepyfile(test_cases=CASES)
    (pytester.path / "out").mkdir(exist_ok=True)
    out = pytester.path / "out" / "results.json"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "fake", f"--speedbench-model={model}",
        "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=3",
        "--speedbench-max-tokens", "40", "--benchmark-json", str(out), *args,
    )
    return result, json.loads(out.read_text())


def test_records_land_in_benchmark_json(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, document = _run(pytester, tiny_model_dir)
    result.assert_outcomes(passed=4)
    names = sorted(b["name"] for b in document["benchmarks"])
    assert names == [
        "test_case[fake-ngram_k3-alpha]", "test_case[fake-ngram_k3-beta]",
        "test_case[fake-none-alpha]", "test_case[fake-none-beta]",
    ]
    ngram = next(b for b in document["benchmarks"] if b["name"] == "test_case[fake-ngram_k3-alpha]")
    record = ngram["extra_info"]["speedbench"]
    assert record["num_requests"] == 4 and record["k"] == 3
    assert record["output_tokens"] == 4 * 40
    assert 1.0 <= record["acceptance_length"] <= 4.0
    # FakeEngine's counters are exact, so stream and counters agree to the token.
    assert record["fidelity"]["accepted_tokens_stream"] == record["fidelity"]["accepted_tokens_counters"]
    assert len(record["requests"]) == 4
    result.stdout.fnmatch_lines(["*speedbench: speculative decoding per case*", "*alpha*ngram_k3*"])


def test_records_survive_xdist(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytest.importorskip("xdist")
    result, document = _run(pytester, tiny_model_dir, "-n", "2")
    result.assert_outcomes(passed=4)
    assert not (pytester.path / "results.json").exists()  # written where asked, nowhere else
    assert len(document["benchmarks"]) == 4
    assert all(b["extra_info"]["speedbench"]["acceptance_length"] for b in document["benchmarks"] if "ngram" in b["name"])


def test_failed_request_fails_only_its_case(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, document = _run(pytester, tiny_model_dir, "--speedbench-engine-args", "fail_request=q2")
    result.assert_outcomes(failed=4)  # every case holds q2; the others' metrics are still recorded
    result.stdout.fnmatch_lines(["*1 request(s) failed*", "*q2 turn 0: EngineError*"])
    assert all(b["extra_info"]["speedbench"]["num_requests"] == 3 for b in document["benchmarks"])


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
    result.stdout.fnmatch_lines(["*huge turn 0: PromptTooLong: prompt huge turn 1: * prompt tokens + 16 output tokens exceed*"])
    record = json.loads(out.read_text())["benchmarks"][0]["extra_info"]["speedbench"]
    assert record["num_requests"] == 1 and record["output_tokens"] == 16
