"""The rate-sweep analysis on records with known figures (built with the real record types): the
crossover, the sustainable rates and their ratio, SmartSpec's fit and prediction, the tables."""
from __future__ import annotations

import dataclasses

import pytest
from recordkit import make_record

from speedbench_plugin import metrics as m
from speedbench_plugin.load import analysis
from speedbench_plugin.load.report import latency_table
from speedbench_plugin.load.schedule import ArrivalPattern
from speedbench_plugin.record import RequestRow

RATES = [1.0, 2.0, 4.0]
STEP = (0.001, 0.0, 0.02)  # the step-time model the decode steps are drawn from: a, b, c


def _steps(drafted: float) -> list[dict[str, float]]:
    rows = []
    for batch in (1, 2, 3, 4, 6, 8):
        batched = batch * (1 + drafted)
        rows.append({"batched_tokens": batched, "context_tokens": batch * 1040.0,
                     "step_s": STEP[0] * batched + STEP[2], "tokens": float(batch)})
    return rows


def _record(drafter: str, rate: float, mean: float, p90: float, attainment: float, histogram: list[int]):
    pattern = ArrivalPattern(rate)
    load = {
        "schedule": {"pattern": pattern.to_json(), "offsets_s": pattern.offsets(4), "concurrency_cap": None},
        "requests": 4, "failed": 0, "achieved_rate_per_s": rate * 0.9, "wall_s": 4 / rate,
        "latency_s": {"mean": mean, "p50": mean, "p90": p90, "p99": p90}, "decode_time_mean_s": mean * 0.8,
        "send_error_s": {"p50": 0.001, "p99": 0.002, "max": 0.003}, "loop_lag_s": {"p50": 0.001, "p99": 0.002},
        "client_cpu": {"process_share": 0.1, "loop_share_max": 0.1},
        "saturation": {"ttft_growth": 1.0, "saturated": False, "note": None},
        "client_bound": {"flag": False, "reasons": []}, "clients": {"processes": 1, "why": "in-process"},
        "slo": {"attainment": attainment, "goodput_rps": rate * attainment, "goodput_tps": 0.0},
        "steps": {"decode_steps": _steps(1.5 if drafter != "none" else 0.0)},
    }
    requests = tuple(RequestRow(f"q{i}", 0, 0, None, prompt_tokens=1024, output_tokens=65) for i in range(4))
    record = make_record(drafter, histogram=histogram, sections={"load": load}, split="load", bucket=1024, tier="mixed",
                         max_tokens=65, requests=requests)
    case = dataclasses.replace(record.case, case_id=f"{record.case.drafter.id}-r{rate:g}", arrival=pattern.label)
    return dataclasses.replace(record, case=case)


@pytest.fixture
def records():
    none = [_record("none", r, mean, p90, att, [10])
            for r, mean, p90, att in zip(RATES, [1.0, 1.5, 3.0], [1.2, 1.8, 3.5], [1.0, 0.8, 0.2])]
    sd = [_record("ngram:k=3", r, mean, p90, att, [5, 5, 5, 5])
          for r, mean, p90, att in zip(RATES, [0.6, 1.3, 4.0], [0.7, 1.9, 5.0], [1.0, 0.95, 0.5])]
    out = none + sd
    sections = analysis.session_sections(out, target=0.9)
    return [r.with_sections(sections[r.case_id]) for r in out]


def test_sweep_figures(records):
    sd = next(r for r in records if r.case_id == "ngram_k3-r2")
    sweep = sd.section("load_sweep")
    assert sweep["rates"] == RATES and sweep["group"].startswith("fake 1024/mixed 65 tok")
    vs = sweep["vs_none"]
    assert vs["latency_mean_diff_s"] == pytest.approx([-0.4, -0.2, 1.0])
    # SD latency - none latency turns positive between 2 and 4 req/s: 2 + 0.2 / 1.2 * 2
    assert vs["crossover_mean"] == {"rate": pytest.approx(2 + 0.4 / 1.2), "kind": "between"}
    assert vs["crossover_p90"] == {"rate": pytest.approx(1 + 0.5 / 0.6), "kind": "between"}
    assert sweep["sustainable_rate"] == {"rate": pytest.approx(2 + 0.05 * 2 / 0.45), "kind": "between",
                                         "target_attainment": 0.9}
    assert vs["sustainable_rate_none"]["rate"] == pytest.approx(1.5)
    assert vs["speedup_at_equal_attainment"] == {"value": pytest.approx((2 + 0.1 / 0.45) / 1.5), "kind": "exact"}
    # every case of the sweep carries the same figures; the none sweep has no partner to compare with
    assert all(r.section("load_sweep") == sweep for r in records if r.case.drafter.enabled)
    assert next(r for r in records if r.case_id == "none-r1").section("load_sweep")["vs_none"] is None


def test_smartspec_fit_and_prediction(records):
    smart = next(r for r in records if r.case.drafter.enabled).section("load_sweep")["vs_none"]["smartspec"]
    fit = smart["fit"]
    assert fit["a_s_per_batched_token"] == pytest.approx(STEP[0]) and fit["c_s_fixed"] == pytest.approx(STEP[2])
    assert smart["fit_source"] == "36 pure decode steps from the load cases"
    # AL from the SD records' histogram [5, 5, 5, 5]: 50 tokens / 20 steps; no counters, so k drafted per step
    assert smart["acceptance_length"] == pytest.approx(2.5) and smart["drafted_per_step"] == 3.0
    assert smart["context_per_request"] == 1024 + 65 / 2
    off = m.DecodeLatencyModel.of(*STEP, 1.0, 0.0, 65, smart["context_per_request"])
    on = m.DecodeLatencyModel.of(*STEP, 2.5, 3.0, 65, smart["context_per_request"])
    assert smart["none_decode_s"] == pytest.approx([off.latency(r) for r in RATES])
    assert smart["sd_decode_s"] == pytest.approx([on.latency(r) for r in RATES])
    assert smart["crossover_rate"] == pytest.approx(m.predicted_crossover(on, off))


def test_tables_read_the_records(records):
    rows, sweeps = analysis.latency_rows(records), analysis.sweep_rows(records)
    assert list(rows["rate"]) == RATES and list(rows["sd_mean_s"]) == [0.6, 1.3, 4.0]
    assert list(rows["none_p90_s"]) == [1.2, 1.8, 3.5]
    assert len(sweeps) == 2 and set(sweeps["drafter_id"]) == {"none", "ngram_k3"}
    text = latency_table(rows, sweeps, 200)
    assert "crossover rate above which SD is slower: mean 2.33 req/s, p90 1.83 req/s" in text
    assert "SD off 1.50 req/s, SD on 2.22 req/s; speedup at equal SLO attainment 1.48x" in text
