"""The throughput bench end to end through pytester on FakeEngine (a synthetic engine: no model
runs, so the figures are plumbing checks, not measurements), and its bad-input handling."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benches" / "test_throughput.py"
PLUGIN = ("-p", "no:cacheprovider")  # the plugin itself loads through its pytest11 entry point


def _bench(pytester: pytest.Pytester) -> tuple[str, ...]:
    """The bench in a fresh directory; the returned args pin rootdir there (the model path given as
    an option would otherwise pull pytest's rootdir inference into the model cache)."""
    ini = pytester.makeini("[pytest]\naddopts = --strict-markers\nmarkers =\n    throughput: throughput split\n")
    pytester.makepyfile(test_throughput=BENCH.read_text())
    return ("-c", str(ini), "--rootdir", str(pytester.path))


def _run(pytester: pytest.Pytester, model: str, *args: str, run: str = "run") -> pytest.RunResult:
    pinned = _bench(pytester)
    return pytester.runpytest_subprocess(
        *pinned, *PLUGIN, "--speedbench-engine", "fake", "--speedbench-model", model, "--speedbench-progress", "off",
        "--speedbench-max-tokens", "16", "--speedbench-num-requests", "4", "--speedbench-buckets", "1024",
        f"--speedbench-run-dir={pytester.path / run}", *args,
    )


def test_sweep_on_fake_engine_writes_tables_csv_and_plots(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result = _run(
        pytester, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=3",
        "--speedbench-draft-lengths", "1,2", "--speedbench-concurrency", "1,2", "--speedbench-tiers", "low_entropy,random",
        "--speedbench-engine-args", "step_s=0.001", "-rs", f"--speedbench-json={pytester.path / 'sweep.json'}",
    )
    # 3 drafters (none, ngram k1, k2) x 2 concurrencies x 2 tiers; the profile once (none); the
    # dynamic-table validation is the second phase, not run here.
    result.assert_outcomes(passed=12 + 1, deselected=2 + 2)
    result.stdout.fnmatch_lines([
        "*the emitted dynamic-SD tables are validated by a second run with --speedbench-dynamic-table*",
        "*speedbench throughput: concurrency sweep*",
        "*random-token inputs vs real tiers*",
        "*best k per concurrency 1024/low_entropy ngram*",
        '*num_speculative_tokens_per_batch_size"] = [[1, *',
    ])
    results = pytester.path / "run"
    with open(results / "throughput_cases.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12
    assert {r["drafter_id"] for r in rows} == {"none", "ngram_k1", "ngram_k2"}
    assert {(r["tier"], r["concurrency"]) for r in rows} == {(t, c) for t in ("low_entropy", "random") for c in ("1", "2")}
    sd = [r for r in rows if r["drafter_id"] != "none"]
    assert all(float(r["speedup_output_tps"]) > 0 and float(r["proxy_speedup"]) > 0 for r in sd)
    assert all(float(r["output_tps_per_gpu"]) == pytest.approx(float(r["output_tps"])) for r in rows)
    assert sorted(p.name for p in results.glob("pareto_*.png")) == [
        f"pareto_1024_{tier}_ngram_k{k}.png" for tier in ("low_entropy", "random") for k in (1, 2)
    ]
    with open(results / "throughput_best_k.csv") as fh:
        best = list(csv.DictReader(fh))
    assert {r["concurrency"] for r in best} == {"1", "2"} and all(r["dynamic_table"].startswith("[[1, ") for r in best)
    # The analyses live in the records: every SD case carries its cell's, every random case its overstatement.
    records = [b["extra_info"]["speedbench"] for b in json.loads((pytester.path / "sweep.json").read_text())["benchmarks"]]
    sd = [r for r in records if r["case"]["k"]]
    assert sd and all(r["sections"]["draft_length"]["family"] == "ngram" for r in sd)
    random_cases = [r for r in records if r["case"]["tier"] == "random"]
    assert random_cases and all("overstatement_vs_real_mean" in r["sections"]["random_vs_real"] for r in random_cases)
    tables = json.loads((results / "dynamic_tables.json").read_text())["tables"]
    by_cell = {(t["tier"], t["family"]): t["table"] for t in tables}
    assert all(r["sections"]["draft_length"]["dynamic_table"] == by_cell[(r["case"]["tier"], "ngram")] for r in sd)
    assert {(t["tier"], t["family"]) for t in tables} == {("low_entropy", "ngram"), ("random", "ngram")}
    assert all(t["table"][0][0] == 1 and set(t["best_fixed"]) == {"1", "2"} for t in tables)

    # Phase two reads the sweep's file: only the validation cases run (vLLM-only: the fake engine says so).
    second = _run(pytester, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=3",
                  "--speedbench-concurrency", "1,2", f"--speedbench-dynamic-table={results}", "-rs", run="phase2")
    second.assert_outcomes(skipped=4, deselected=2 * 2 * 4 + 2)
    second.stdout.fnmatch_lines(["*validating 2 dynamic-SD table(s)*", "*dynamic SD tables are a vLLM feature*"])


def test_dynamic_table_file_must_be_a_sweeps(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    bogus = pytester.path / "tables.json"
    bogus.write_text('{"nope": 1}')
    result = _run(pytester, tiny_model_dir, f"--speedbench-dynamic-table={bogus}")
    assert result.ret != 0
    result.stderr.fnmatch_lines([f"*--speedbench-dynamic-table {bogus}: not a dynamic_tables.json written by a sweep*"])
    missing = _run(pytester, tiny_model_dir, "--speedbench-dynamic-table=/no/such/file.json")
    missing.stderr.fnmatch_lines(["*--speedbench-dynamic-table '/no/such/file.json': no such file*"])


def test_per_gpu_tps_divides_by_tensor_parallel_size(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result = _run(pytester, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-tiers", "mixed",
                  "--speedbench-engine-args", "tensor_parallel_size=4", "-k", "not dynamic and not profile")
    result.assert_outcomes(passed=1)
    with open(pytester.path / "run" / "throughput_cases.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["output_tps_per_gpu"]) == pytest.approx(float(row["output_tps"]) / 4)


@pytest.mark.parametrize("option, value, message", [
    ("--speedbench-draft-lengths", "1,0", "--speedbench-draft-lengths '0': not a positive integer"),
    ("--speedbench-draft-lengths", "two", "--speedbench-draft-lengths 'two': not a positive integer"),
    ("--speedbench-concurrency", "4,-1", "--speedbench-concurrency '-1': not a positive integer"),
    ("--speedbench-buckets", "1k,x", "--speedbench-buckets 'x': not a positive integer"),
    ("--speedbench-tiers", "low_entropy,boring", "--speedbench-tiers: unknown tier(s) boring"),
])
def test_bad_option_values_name_the_option(pytester: pytest.Pytester, tiny_model_dir: str, option: str, value: str,
                                           message: str) -> None:
    result = _run(pytester, tiny_model_dir, option, value)
    assert result.ret != 0
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_bucket_beyond_context_is_skipped_with_a_message(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    # The tiny model's context is 4096 tokens: the 8k bucket cannot run, the 1k bucket still does.
    result = _run(pytester, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-buckets", "1k,8k",
                  "--speedbench-tiers", "low_entropy", "-k", "not dynamic and not profile", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*bucket 8192 + 16 output tokens exceed*context of 4096*"])


def test_draft_lengths_expand_every_sd_drafter(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pinned = _bench(pytester)
    result = pytester.runpytest_subprocess(
        *pinned, *PLUGIN, "--collect-only", "-q", "--speedbench-engine", "fake", "--speedbench-model", tiny_model_dir,
        "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=3,min=2", "--speedbench-drafter", "draft:k=3",
        "--speedbench-draft-lengths", "2,4", "--speedbench-buckets", "1024", "--speedbench-tiers", "mixed",
        "-k", "not dynamic and not profile",
    )
    ids = {line.split("[", 1)[1].split("-c1")[0] for line in result.stdout.lines if "test_throughput[" in line}
    assert ids == {"fake-none", "fake-ngram_k2_min2", "fake-ngram_k4_min2", "fake-draft_k2", "fake-draft_k4"}
