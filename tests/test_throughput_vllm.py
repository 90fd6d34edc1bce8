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


def test_short_sweep_with_dynamic_table_validation(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    pytest.importorskip("vllm")
    ini = pytester.makeini("[pytest]\naddopts = --strict-markers\nmarkers =\n    throughput: throughput split\n")
    pytester.makepyfile(test_throughput=BENCH.read_text())
    out = pytester.path / "bench.json"
    result = pytester.runpytest_subprocess(
        "-c", str(ini), "--rootdir", str(pytester.path),
        "-p", "no:cacheprovider", "--speedbench-engine", "vllm", "--speedbench-model", tiny_model_dir,
        "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=2", "--speedbench-draft-lengths", "1,2",
        "--speedbench-concurrency", "1,2", "--speedbench-buckets", "1024", "--speedbench-tiers", "low_entropy",
        "--speedbench-num-requests", "2", "--speedbench-max-tokens", "16", "--speedbench-progress", "off",
        "--benchmark-json", str(out), "-rs",
        timeout=1800,
    )
    # 3 drafters x 2 concurrencies, the profile, and the dynamic table at both concurrencies.
    result.assert_outcomes(passed=6 + 1 + 2, deselected=2)
    result.stdout.fnmatch_lines(['*num_speculative_tokens_per_batch_size"] = [[1, *', "*dynamic SD table vs the best fixed k*"])
    (results,) = (pytester.path / "results").glob("*-throughput")  # one folder per run
    with open(results / "throughput_cases.csv") as fh:
        rows = list(csv.DictReader(fh))
    dynamic = [r for r in rows if r["dynamic"] == "True"]
    assert len(rows) == 8 and len(dynamic) == 2
    assert all(int(r["output_tokens"]) == int(r["num_requests"]) * 16 for r in rows)  # ignore_eos: equal work
    assert all(float(r["acceptance_length"]) >= 1.0 for r in rows)
    records = [b["extra_info"]["speedbench"] for b in json.loads(out.read_text())["benchmarks"]]
    table = next(r["throughput"]["dynamic_table"] for r in records if "dynamic_table" in r.get("throughput", {}))
    assert table[0][0] == 1 and all(0 <= k <= 2 for _, _, k in table)
    # vLLM's own counters saw the run: the SD cases report drafts.
    # (per-request counters from vLLM 0.29, engine-wide Prometheus deltas before)
    assert all(r["engine_counters"].get("per_request") or r["engine_counters"].get("global")
               for r in records if r["k"] and r["k"] > 0)
    with open(results / "throughput_step_profile.csv") as fh:
        assert len(list(csv.DictReader(fh))) >= 8
