"""The sweep report: tables for the terminal summary, CSV files and Pareto PNGs under ``results/``.

``ThroughputReport`` is a class plugin: it collects records and step profiles as reports arrive
(the dynamic-table validation reads them in-process), and implements the lead plugin's
``pytest_speedbench_records`` (files) and ``pytest_speedbench_terminal_summary`` (tables).
"""
from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from speedbench_plugin.reports import REPORT_PROPERTY
from speedbench_plugin.throughput import analysis
from speedbench_plugin.throughput.pareto import pareto_plots, plot_rows

PROFILE_PROPERTY = "speedbench_step_profile"


def _fmt(value: Any, digits: int = 2, pct: bool = False, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if pct:
        return f"{value * 100:+.1f}%"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _table(title: str, columns: list[str], rows: list[list[str]], width: int) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(table)
    return buffer.getvalue()


def sweep_table(frame: pd.DataFrame, width: int) -> str:
    rows = [[f"{r.bucket}/{r.tier}", str(r.drafter_id), str(r.concurrency), _fmt(r.output_tps, 1),
             _fmt(r.output_tps_per_gpu, 1), _fmt(r.user_tps_median, 1), f"{_fmt(r.user_tps_p10, 1)}–{_fmt(r.user_tps_p90, 1)}",
             _fmt(r.ttft_median_s, 3), _fmt(r.step_latency_p50_s * 1e3 if r.step_latency_p50_s == r.step_latency_p50_s else None, 1),
             _fmt(r.acceptance_length), _fmt(r.speedup_output_tps, suffix="x"), _fmt(r.speedup_user_tps, suffix="x"),
             _fmt(r.proxy_speedup, suffix="x")]
            for r in frame.itertuples()]
    return _table("speedbench throughput: concurrency sweep (speedup vs `none` at the same concurrency; proxy = t_ar·AL/t_sd)",
                  ["bucket/tier", "drafter", "conc", "out tok/s", "per GPU", "user med", "user p10–p90", "TTFT s",
                   "step p50 ms", "AL", "speedup out", "speedup user", "proxy"], rows, width)


def random_table(table: pd.DataFrame, width: int) -> str:
    rows = [[str(r["bucket"]), str(r["drafter_id"]), "on" if r["sd"] else "off", str(r["concurrency"]),
             _fmt(r["random_tps"], 1), _fmt(r["real_mean_tps"], 1), _fmt(r["overstatement_vs_real_mean"], pct=True),
             " ".join(f"{k.removeprefix('overstatement_vs_')}={_fmt(v, pct=True)}" for k, v in r.items()
                      if k.startswith("overstatement_vs_") and k != "overstatement_vs_real_mean" and not pd.isna(v))]
            for _, r in table.iterrows()]
    summary = ""
    if not table.empty:
        # The median too: one stalled case (a shared machine) moves the mean of ratios a lot.
        by_sd = table.groupby("sd")["overstatement_vs_real_mean"].agg(["mean", "median"])
        summary = "overstatement of output TPS by random inputs (mean / median over cases): " + ", ".join(
            f"SD {'on' if sd else 'off'} {_fmt(row['mean'], pct=True)} / {_fmt(row['median'], pct=True)}"
            for sd, row in by_sd.iterrows()) + "\n"
    return _table("speedbench throughput: random-token inputs vs real tiers (output TPS, random / real − 1)",
                  ["bucket", "drafter", "SD", "conc", "random tok/s", "real mean tok/s", "overstated", "per tier"],
                  rows, width) + summary


def draft_length_report(item: analysis.DraftLengthAnalysis, width: int) -> str:
    m = item.measured
    rows = [[str(int(r["concurrency"])), str(int(r["k"])), _fmt(r["output_tps"], 1), _fmt(r["decode_goodput"], 1),
             _fmt(r.get("predicted_goodput"), 1), _fmt(r.get("predicted_vs_decode"), pct=True),
             "◀ best" if item.best_k_measured.get(int(r["concurrency"])) == int(r["k"]) else ""]
            for _, r in m.iterrows()]
    text = _table(
        f"draft length sweep {item.bucket}/{item.tier} {item.family}: measured goodput (output tok/s), "
        "decode goodput (pure decode steps) and SmartSpec's prediction",
        ["conc", "k", "out tok/s", "decode tok/s", "predicted", "pred vs decode", ""], rows, width)
    choice = item.choice_rows()
    text += _table(
        f"best k per concurrency {item.bucket}/{item.tier} {item.family} (k = 0: no SD)",
        ["conc", "best k (measured)", "tok/s", "SmartSpec k", "tok/s at it", "SSSD k", "tok/s at it"],
        [[str(r["concurrency"]), str(r["best_k_measured"]), _fmt(r["tps_best"], 1), _fmt(r["k_smartspec"]),
          _fmt(r["tps_smartspec"], 1), _fmt(r["k_sssd"]), _fmt(r["tps_sssd"], 1)] for r in choice], width)
    lines = []
    if item.dynamic_table:
        lines.append("vLLM dynamic SD table: speculative_config[\"num_speculative_tokens_per_batch_size\"] = "
                     + json.dumps([list(e) for e in item.dynamic_table]))
    if item.model is not None:
        fit = item.model
        lines.append(f"SmartSpec step model: t = {fit.per_batched_token * 1e3:.3f} ms·batched + "
                     f"{fit.per_context_token * 1e6:.4f} µs·context + {fit.fixed * 1e3:.2f} ms "
                     f"(R² {fit.r2:.3f}, {fit.samples} pure decode steps); acceptance per position "
                     f"{' '.join(f'{p:.3f}' for p in item.per_position)}, drafting share {item.drafting_share:.2f}")
    if item.knee is not None:
        lines.append(f"SSSD knee: step time grows beyond {item.knee.tokens:.0f} batched tokens "
                     f"(flat {item.knee.flat_s * 1e3:.1f} ms, +{item.knee.slope_s_per_token * 1e3:.3f} ms/token, "
                     f"R² {item.knee.r2:.3f}); k = knee // concurrency, capped at the largest swept k")
    lines += item.notes
    return text + "".join(f"{line}\n" for line in lines)


def validation_table(table: pd.DataFrame, width: int) -> str:
    rows = [[f"{r['bucket']}/{r['tier']}", str(r["concurrency"]), _fmt(r["dynamic_tps"], 1), str(r["best_fixed"]),
             _fmt(r["best_fixed_tps"], 1), _fmt(r["dynamic_vs_best_fixed"], pct=True)] for _, r in table.iterrows()]
    return _table("vLLM dynamic SD table vs the best fixed k (output tok/s)",
                  ["bucket/tier", "conc", "dynamic", "best fixed", "tok/s", "dynamic vs fixed"], rows, width)


class ThroughputReport:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict[str, Any]] = []
        self.profiles: list[dict[str, Any]] = []
        self.written: list[Path] = []
        self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    @property
    def results_dir(self) -> Path:
        # One folder per run, so a run's CSVs and PNGs never mix with an earlier run's.
        return Path(self.config.rootpath) / "results" / f"{self._stamp}-throughput"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == REPORT_PROPERTY and isinstance(value, dict) and value.get("split") == "throughput":
                self.records.append(value)
            elif name == PROFILE_PROPERTY and isinstance(value, list):
                self.profiles = value

    def analyses(self, records: list[dict[str, Any]]) -> list[analysis.DraftLengthAnalysis]:
        return analysis.draft_length_analyses(records, self.profiles)

    def pytest_speedbench_records(self, config: pytest.Config, records: list[dict[str, Any]]) -> None:
        frame = analysis.cases_frame(records)
        if frame.empty:
            return
        out = self.results_dir
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "throughput_cases.csv", index=False)
        self.written = [out / "throughput_cases.csv"]
        rvr = analysis.random_vs_real(frame)
        if not rvr.empty:
            rvr.to_csv(out / "throughput_random_vs_real.csv", index=False)
            self.written.append(out / "throughput_random_vs_real.csv")
        items = self.analyses(records)
        if items:
            pd.concat([i.measured.assign(bucket=i.bucket, tier=i.tier, family=i.family) for i in items]).to_csv(
                out / "throughput_goodput.csv", index=False)
            pd.DataFrame([{**row, "bucket": i.bucket, "tier": i.tier, "family": i.family,
                           "dynamic_table": json.dumps(i.dynamic_table)} for i in items for row in i.choice_rows()]
                         ).to_csv(out / "throughput_best_k.csv", index=False)
            self.written += [out / "throughput_goodput.csv", out / "throughput_best_k.csv"]
        if self.profiles:
            pd.DataFrame(self.profiles).to_csv(out / "throughput_step_profile.csv", index=False)
            self.written.append(out / "throughput_step_profile.csv")
        self.written += pareto_plots(plot_rows(records), out)

    def pytest_speedbench_terminal_summary(self, config: pytest.Config, records: list[dict[str, Any]], terminalreporter: Any) -> None:
        frame = analysis.cases_frame(records)
        if frame.empty:
            return
        width = max(terminalreporter._tw.fullwidth, 160)
        write = terminalreporter.write
        write(sweep_table(frame[~frame["dynamic"]], width))
        rvr = analysis.random_vs_real(frame)
        if not rvr.empty:
            write(random_table(rvr, width))
        for item in self.analyses(records):
            write(draft_length_report(item, width))
        validation = analysis.dynamic_validation(frame)
        if not validation.empty:
            write(validation_table(validation, width))
        if self.written:
            write(f"throughput results: {', '.join(str(p.relative_to(self.config.rootpath)) if p.is_relative_to(self.config.rootpath) else str(p) for p in self.written)}\n")
