"""The load bench end to end through pytester on FakeEngine (a synthetic engine: no model runs, so
the figures are plumbing checks, not measurements), its client-bound check under a real overload of
the client's event loop, and its bad-input handling."""
from __future__ import annotations

import csv
import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from speedbench_plugin.load.schedule import ArrivalPattern

BENCH = Path(__file__).resolve().parents[1] / "benches" / "test_load.py"
# The plugin loads through its pytest11 entry point once installed; from a checkout, by module name.
LOAD_PLUGIN = () if any(ep.name == "speedbench_load" for ep in entry_points(group="pytest11")) else (
    "-p", "speedbench_plugin.load.plugin")


def _run(pytester: pytest.Pytester, model: str, *args: str) -> tuple[pytest.RunResult, dict[str, dict]]:
    ini = pytester.makeini("[pytest]\naddopts = --strict-markers\nmarkers =\n    load: load\n    throughput: throughput\n")
    pytester.makepyfile(test_load=BENCH.read_text())
    own = pytester.path / "own.json"
    result = pytester.runpytest_subprocess(
        "-c", str(ini), "--rootdir", str(pytester.path), *LOAD_PLUGIN, "-p", "no:cacheprovider",
        "--speedbench-engine", "fake", "--speedbench-model", model, "--speedbench-progress", "off",
        "--speedbench-max-tokens", "16", "--speedbench-num-requests", "6", "--speedbench-buckets", "1024",
        "--speedbench-tiers", "mixed", f"--speedbench-run-dir={pytester.path / 'run'}", f"--speedbench-json={own}", *args,
    )
    records = {b["name"]: b["extra_info"]["speedbench"] for b in json.loads(own.read_text())["benchmarks"]} \
        if own.exists() else {}
    return result, records


def test_rate_sweep_records_schedule_slo_goodput_and_the_crossover(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, records = _run(pytester, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=3",
                           "--speedbench-engine-args", "step_s=0.002", "--speedbench-request-rate", "5,20",
                           "--speedbench-slo", "ttft=0.5,e2el=2", "--speedbench-load-seed", "3")
    result.assert_outcomes(passed=4)
    assert sorted(records) == [f"test_load[fake-{d}-b1024-mixed-r{r}]" for d in ("ngram_k3", "none") for r in (20, 5)]
    for name, record in records.items():
        rate = 20.0 if name.endswith("r20]") else 5.0
        load = record["sections"]["load"]
        # the schedule is recorded and replays exactly from its seed
        assert load["schedule"]["offsets_s"] == ArrivalPattern(rate, seed=3).offsets(6)
        assert load["schedule"]["pattern"]["label"] == record["case"]["arrival"] == f"{rate:g}/s poisson seed=3"
        rows = load["per_request"]
        assert len(rows) == 6 and all(row["send_error_s"] >= 0 for row in rows)
        assert sorted(row["scheduled_s"] for row in rows) == pytest.approx(load["schedule"]["offsets_s"], abs=1e-6)
        met = sum(1 for row in rows if row["slo_met"])
        assert load["slo"]["met"] == met and load["slo"]["attainment"] == pytest.approx(met / 6)
        assert load["slo"]["goodput_rps"] == pytest.approx(met / load["wall_s"])
        assert load["clients"]["processes"] == 1 and "synthetic engine" in load["clients"]["why"]
        assert load["saturation"]["saturated"] is None  # 6 requests: too few to judge
        assert load["clients"]["clock"]["implementation"] and load["loop_lag_s"]["samples"] > 0
        sweep = record["sections"]["load_sweep"]
        assert sweep["rates"] == [5.0, 20.0] and sweep["sustainable_rate"]["target_attainment"] == 0.9
    sd = records["test_load[fake-ngram_k3-b1024-mixed-r5]"]
    # speedup against none at the same rate, never another rate's
    assert sd["sections"]["speedup_vs_none"]["baseline_case_id"] == "test_load[fake-none-b1024-mixed-r5]"
    vs = sd["sections"]["load_sweep"]["vs_none"]
    assert vs["rates"] == [5.0, 20.0] and len(vs["latency_mean_diff_s"]) == 2
    assert vs["crossover_mean"]["kind"] in ("between", "below-range", "not-reached")
    assert "fit" in vs["smartspec"] or vs["smartspec"]["note"].startswith("no SmartSpec prediction")
    assert records["test_load[fake-none-b1024-mixed-r5]"]["sections"]["load_sweep"]["vs_none"] is None
    stdout = result.stdout.str()
    for text in ("speedbench load: per case", "latency vs request rate", "crossover rate above which SD is slower",
                 "highest sustainable rate at 90% SLO attainment", "speedup at equal SLO attainment"):
        assert text in stdout
    run = pytester.path / "run"
    with open(run / "load_cases.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    with open(run / "load_latency_vs_rate.csv") as fh:
        assert [row["rate"] for row in csv.DictReader(fh)] == ["5.0", "20.0"]
    assert len(list(run.glob("load_latency_vs_rate_*ngram_k3.png"))) == 1 and (run / "load_sweeps.csv").exists()


def test_overloaded_client_loop_is_flagged_client_bound(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    # 400 streams all at once from an engine that never sleeps: the client's one loop is the bottleneck.
    result, records = _run(pytester, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-request-rate", "inf",
                           "--speedbench-num-requests", "400", "--speedbench-max-tokens", "64",
                           "--speedbench-client-bound-loop-lag", "0.002")
    result.assert_outcomes(passed=1)
    (record,) = records.values()
    verdict = record["sections"]["load"]["client_bound"]
    assert verdict["flag"] and any("event-loop lag" in reason for reason in verdict["reasons"])
    assert verdict["thresholds"]["loop_lag_p99_s"] == 0.002
    assert record["sections"]["load"]["loop_lag_s"]["p99"] > 0.002
    stdout = result.stdout.str()
    assert "CLIENT-BOUND test_load[fake-none-b1024-mixed-rinf]" in stdout and "not the engine's" in stdout


def test_duration_bound_run_sends_what_the_schedule_holds(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    result, records = _run(pytester, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-request-rate", "8",
                           "--speedbench-duration", "1.5", "--speedbench-burstiness", "0.5", "--speedbench-ramp-up", "0.5")
    result.assert_outcomes(passed=1)
    (record,) = records.values()
    expected = ArrivalPattern(8.0, burstiness=0.5, ramp_up_s=0.5, duration_s=1.5).offsets()
    assert len(record["requests"]) == len(expected) and record["sections"]["load"]["schedule"]["offsets_s"] == expected
    assert record["case"]["arrival"] == "8/s gamma b=0.5 ramp=0.5s for=1.5s"


@pytest.mark.parametrize("args, message", [
    (("--speedbench-request-rate", "1,0"), "--speedbench-request-rate '0': a request rate must be positive"),
    (("--speedbench-request-rate", "-2"), "--speedbench-request-rate '-2': a request rate must be positive"),
    (("--speedbench-request-rate", "fast"), "--speedbench-request-rate 'fast': not a number"),
    (("--speedbench-burstiness", "0"), "--speedbench-burstiness '0': must be a positive number"),
    (("--speedbench-duration", "-5"), "--speedbench-duration '-5': must be a positive number"),
    (("--speedbench-duration", "5", "--speedbench-request-rate", "2,inf"),
     "--speedbench-request-rate inf sends every request at once: --speedbench-duration needs finite rates"),
    (("--speedbench-slo", "ttfb=1"), "--speedbench-slo: unknown SLO 'ttfb'; known: ttft, tpot, e2el"),
    (("--speedbench-slo", "ttft=-1"), "--speedbench-slo ttft='-1': must be a positive number of seconds"),
    (("--speedbench-clients", "2"), "--speedbench-clients 2: engine fake takes at most 1 client process"),
    (("--speedbench-clients", "3", "--speedbench-engine", "vllm"),
     "--speedbench-clients 3: engine vllm takes at most 1 client process: vLLM's AsyncLLM runs inside"),
    (("--speedbench-clients", "0"), "--speedbench-clients '0': not a positive integer"),
    (("--speedbench-slo-attainment", "1.5"), "--speedbench-slo-attainment '1.5': a share"),
])
def test_bad_input_is_a_usage_error_naming_the_option(pytester: pytest.Pytester, tiny_model_dir: str, args: tuple[str, ...],
                                                       message: str) -> None:
    result, _ = _run(pytester, tiny_model_dir, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
