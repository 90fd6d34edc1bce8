"""make bench's closing lines: whether SD paid, from the records' own figures."""
from __future__ import annotations

from recordkit import make_record, with_speedups

from speedbench_plugin.first_table import does_sd_pay


def _pair(category: str, *, al: float, sd_step: float, sd_tps: float) -> list:
    return [make_record("none", split="qualitative", category=category, output_tps=10.0, step_latency=0.040, al=1.0),
            make_record("ngram:k=3", split="qualitative", category=category, output_tps=sd_tps, step_latency=sd_step, al=al)]


def test_sd_that_pays_is_said_to_pay_with_the_records_figures() -> None:
    records = with_speedups(_pair("rag", al=2.0, sd_step=0.050, sd_tps=15.0) + _pair("coding", al=1.8, sd_step=0.050, sd_tps=13.0))
    [line] = does_sd_pay(records)
    assert line.startswith("speedbench: ngram_k3: SD paid here (output speedup 1.40x, median of 2 case(s))")
    assert "50 ms against 40 ms without" in line and "1.90 tokens (AL)" in line
    assert "more than makes up" in line and "proxy t_ar*AL/t_sd: 1.52x" in line


def test_sd_that_does_not_pay_says_why() -> None:
    records = with_speedups(_pair("writing", al=1.02, sd_step=0.080, sd_tps=5.0))
    [line] = does_sd_pay(records)
    assert "SD did not pay here (output speedup 0.50x, median of 1 case(s))" in line
    assert "80 ms against 40 ms" in line and "too few to make up for the dearer step" in line


def test_decode_gain_lost_elsewhere_is_named() -> None:
    records = with_speedups(_pair("rag", al=2.0, sd_step=0.050, sd_tps=9.0))
    [line] = does_sd_pay(records)
    assert "did not pay" in line and "time outside the decode steps" in line


def test_no_none_case_means_no_claim() -> None:
    assert does_sd_pay(with_speedups([make_record("ngram:k=3", split="qualitative", category="rag")])) == []
