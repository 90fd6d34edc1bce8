"""The client-cost benchmark's arithmetic: the steady-state window, the server counters it reads,
the cross-check's comparison and its table (the runs themselves are `make client-cost`)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from speedbench_plugin.clientcost import report
from speedbench_plugin.clientcost.runs import VLLM_BENCH, compare_counts
from speedbench_plugin.clientcost.window import Sample, counter, steady_window, tree_cpu_s


def test_the_window_opens_at_two_percent_and_closes_at_the_last_token() -> None:
    samples = [Sample(0.0, 1000, 0.0),  # before the client: the counter's base, no CPU yet
               Sample(1.0, 1000, 2.0),  # start-up: imports, no tokens (outside the window)
               Sample(2.0, 1010, 2.5),  # 10 of 1000 tokens: below 2 %
               Sample(3.0, 1100, 3.0),  # the window opens here (100 >= 20)
               Sample(4.0, 1600, 4.0),
               Sample(5.0, 2000, 4.5),  # the last token: the window closes
               Sample(6.0, 2000, 9.0),  # the report written afterwards (outside)
               Sample(7.0, 2000, None)]  # after the client exited
    window = steady_window(samples)
    assert (window.tokens, window.cpu_s, window.wall_s, window.run_tokens) == (900, 1.5, 2.0, 1000)
    assert window.cpu_us_per_token == pytest.approx(1.5 / 900 * 1e6)
    with pytest.raises(ValueError, match="no tokens"):
        steady_window([Sample(0, 5, 0.0), Sample(1, 5, 1.0), Sample(2, 5, None)])
    with pytest.raises(ValueError, match="exited before"):
        steady_window([Sample(0, 0, 0.0), Sample(1, 50, 1.0), Sample(2, 100, None)])
    with pytest.raises(ValueError, match="too briefly"):
        steady_window([Sample(0, 0, 0.0), Sample(1, 100, None)])


def test_counters_are_summed_over_labels() -> None:
    text = ('# HELP vllm:generation_tokens_total x\nvllm:generation_tokens_total{engine="0",model_name="m"} 40.0\n'
            'vllm:generation_tokens_total{engine="1",model_name="m"} 2.0\nvllm:generation_tokens_created 1.7e9\n')
    assert counter(text, "vllm:generation_tokens_total") == 42.0
    assert counter(text, "vllm:prompt_tokens_total") == 0.0


def test_tree_cpu_counts_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
                              "'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.5: pass\\n"
                              "time.sleep(30)'])")])
    try:
        deadline = time.monotonic() + 60
        while (tree_cpu_s(child.pid) or 0.0) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tree_cpu_s(child.pid) or 0.0) >= 0.5  # the grandchild's busy loop, counted at the root
    finally:
        for proc in __import__("psutil").Process(child.pid).children(recursive=True):
            proc.kill()
        child.kill()
        child.wait()
    assert tree_cpu_s(child.pid) is None and os.getpid() > 0


def _ours(tokens: list[int], drafts: int, accepted: int) -> dict[str, object]:
    spec = {"num_drafts": drafts, "num_draft_tokens": 3 * drafts, "num_accepted_tokens": accepted}
    return {"requests": [{"output_tokens": t, "spec": spec, "steps": None, "merged_chunks": 0} for t in tokens],
            "counters": {"num_drafts": 2 * drafts, "num_draft_tokens": 6 * drafts, "num_accepted_tokens": 2 * accepted}}


def test_the_cross_check_compares_every_count() -> None:
    theirs = {"output_lens": [10, 20], "spec_decode_num_drafts": 8, "spec_decode_draft_tokens": 24,
              "spec_decode_accepted_tokens": 6}
    same = compare_counts(_ours([10, 20], 4, 3), theirs, ["coding", "math"])
    assert same["identical"] and same["output_tokens_per_category"]["speedbench"] == {"coding": 10, "math": 20}
    assert same["counts"]["accepted_tokens"] == {"speedbench_per_request": 6, "speedbench_server_counters": 6,
                                                 "vllm_bench_serve": 6}
    assert not compare_counts(_ours([10, 21], 4, 3), theirs, ["coding", "math"])["identical"]
    assert not compare_counts(_ours([10, 20], 4, 3), {**theirs, "spec_decode_num_drafts": 9}, ["coding", "math"])["identical"]
    table = report.markdown({"settings": {"num_prompts": 2, "max_tokens": 64, "repeats": 1}, "stamp": "s", "cost": [],
                             "crosscheck": same})
    assert "identical" in table and "| accepted_tokens | 6 | 6 | 6 |" in table


def test_the_table_gives_each_run_and_the_ratio_of_medians() -> None:
    def row(client: str, cost: float, repeat: int) -> dict[str, object]:
        return {"client": client, "concurrency": 64, "repeat": repeat, "cpu_us_per_token": cost,
                "reported_output_tps": 1000.0, "server_prompt_tokens": 100, "server_output_tokens": 640, "errors": 0}

    rows = [row("speedbench openai", 30.0, 0), row(VLLM_BENCH, 60.0, 0), row(VLLM_BENCH, 50.0, 1),
            row("speedbench openai", 20.0, 1)]
    lines = report.cost_table(rows)
    assert lines[2].startswith(f"| {VLLM_BENCH} | 64 |") and "60.0 · 50.0" in lines[2]
    assert "| 30.0 · 20.0 | 0.45 |" in lines[3]  # median 25 / median 55
    assert not math.isnan(float(lines[3].split("|")[5]))
