"""The sweep report: tables for the terminal summary, CSV files, Pareto PNGs and the emitted
dynamic-SD tables under the run's folder.

``ThroughputReport`` is a class plugin: it collects the step profile as reports arrive and
implements the lead plugin's session hooks: ``pytest_speedbench_session_sections`` (a dynamic-table
run against the sweep's best fixed k), ``pytest_speedbench_records`` (files) and
``pytest_speedbench_terminal_summary`` (tables), all from the final records.
"""
from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.cache import atomic_write_json
from speedbench_plugin.record import Record
from speedbench_plugin.rundir import display, run_directory
from speedbench_plugin.throughput import analysis
from speedbench_plugin.throughput.case import PROFILE_PROPERTY
from speedbench_plugin.throughput.dynamic import max_k
from speedbench_plugin.throughput.pareto import pareto_plots


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


def validation_table(rows: Sequence[tuple[Record, dict[str, Any]]], width: int) -> str:
    cells = [[r.case.label, str(r.case.concurrency), _fmt(r.speed.output_tps, 1), f"k={v['best_fixed_k']}",
              _fmt(v["best_fixed_tps"], 1), _fmt(v["dynamic_vs_best_fixed"] - 1 if v["dynamic_vs_best_fixed"] else None, pct=True)]
             for r, v in rows]
    return _table("vLLM dynamic SD table vs the sweep's best fixed k (output tok/s; the fixed k ran in the sweep's session)",
                  ["bucket/tier", "conc", "dynamic", "best fixed", "tok/s", "dynamic vs fixed"], cells, width)


def dynamic_entries(items: Sequence[analysis.DraftLengthAnalysis]) -> list[dict[str, Any]]:
    """The emitted tables, with the sweep's best fixed k per concurrency to validate against."""
    out = []
    for item in items:
        if not item.dynamic_table or item.drafter is None:
            continue
        best = {str(r["concurrency"]): {"k": r["best_k_measured"], "output_tps": r["tps_best"]} for r in item.choice_rows()}
        out.append({"bucket": item.bucket, "tier": item.tier, "family": item.family,
                    "drafter": str(item.drafter.with_k(max(1, max_k(item.dynamic_table)))),
                    "table": [list(e) for e in item.dynamic_table], "best_fixed": best})
    return out


class ThroughputReport:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.profiles: list[dict[str, Any]] = []
        self.written: list[Path] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == PROFILE_PROPERTY and isinstance(value, list):
                self.profiles = value

    def pytest_speedbench_session_sections(self, config: pytest.Config, records: Sequence[Record]) -> dict[str, dict[str, Any]]:
        """The sweep's analyses on the cases they concern, and a run with a dynamic table against the
        best fixed k the sweep measured at its concurrency."""
        from speedbench_plugin.throughput.settings import throughput_settings

        entries: dict[tuple[int | None, str | None, str], Any] = {
            (e.bucket, e.tier, e.family): e for e in throughput_settings(config).dynamic}
        out: dict[str, dict[str, Any]] = analysis.session_sections(records, self.profiles)
        for record in analysis.throughput_records(records):
            if record.case.dynamic_table is None:
                continue
            entry = entries.get((record.case.bucket, record.case.tier, analysis.family_of(record.case.drafter)))
            best = (entry.best_fixed if entry else {}).get(str(record.case.concurrency))
            if not best:
                continue
            out.setdefault(record.case_id, {})["dynamic_validation"] = {
                "best_fixed_k": best["k"], "best_fixed_tps": best["output_tps"],
                "dynamic_vs_best_fixed": m.speedup(record.speed.output_tps, best["output_tps"]),
                "note": "the best fixed k was measured by the sweep, in an earlier session",
            }
        return out

    def pytest_speedbench_records(self, config: pytest.Config, records: Sequence[Record]) -> None:
        frame = analysis.cases_frame(records)
        if frame.empty:
            return
        out = run_directory(config)
        frame.to_csv(out / "throughput_cases.csv", index=False)
        self.written = [out / "throughput_cases.csv"]
        rvr = analysis.random_vs_real_of(records)
        if not rvr.empty:
            rvr.to_csv(out / "throughput_random_vs_real.csv", index=False)
            self.written.append(out / "throughput_random_vs_real.csv")
        items = analysis.analyses_of(records)
        if items:
            pd.concat([i.measured.assign(bucket=i.bucket, tier=i.tier, family=i.family) for i in items]).to_csv(
                out / "throughput_goodput.csv", index=False)
            pd.DataFrame([{**row, "bucket": i.bucket, "tier": i.tier, "family": i.family,
                           "dynamic_table": json.dumps(i.dynamic_table)} for i in items for row in i.choice_rows()]
                         ).to_csv(out / "throughput_best_k.csv", index=False)
            self.written += [out / "throughput_goodput.csv", out / "throughput_best_k.csv"]
            entries = dynamic_entries(items)
            if entries:
                atomic_write_json(out / "dynamic_tables.json", {"tables": entries})
                self.written.append(out / "dynamic_tables.json")
        if self.profiles:
            pd.DataFrame(self.profiles).to_csv(out / "throughput_step_profile.csv", index=False)
            self.written.append(out / "throughput_step_profile.csv")
        self.written += pareto_plots(frame[~frame["dynamic"]], out)

    def pytest_speedbench_terminal_summary(self, config: pytest.Config, records: Sequence[Record], terminalreporter: Any) -> None:
        frame = analysis.cases_frame(records)
        if frame.empty:
            return
        width = max(terminalreporter._tw.fullwidth, 160)
        write = terminalreporter.write
        if (~frame["dynamic"]).any():
            write(sweep_table(frame[~frame["dynamic"]], width))
        rvr = analysis.random_vs_real_of(records)
        if not rvr.empty:
            write(random_table(rvr, width))
        for item in analysis.analyses_of(records):
            write(draft_length_report(item, width))
        validation = [(r, r.section("dynamic_validation")) for r in records if r.section("dynamic_validation")]
        if validation:
            write(validation_table(validation, width))
        if self.written:
            write(f"throughput results: {', '.join(display(p, config) for p in self.written)}\n")
