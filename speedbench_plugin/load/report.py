"""The load report: the cross-case sweep figures at session end, tables for the terminal summary,
CSV files and plots under the run's folder, and the harness benchmark's table — all from the final
records (and, for the harness, from its benchmark's reports)."""
from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from speedbench_plugin.record import Record
from speedbench_plugin.rundir import display, run_directory

HARNESS_GOAL = {"streams": 512, "events_per_s": 20_000, "p99_ms": 2.5}


def _fmt(value: Any, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value * scale:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _table(title: str, columns: list[str], rows: list[list[str]], width: int, keep: int = 2) -> str:
    """A rich table as text; the first ``keep`` columns and the last (flags) never wrap."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < keep else "right", no_wrap=i < keep or i == len(columns) - 1)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(table)
    return buffer.getvalue()


def _rate(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g}"


def _bounded(value: Any, kind: str | None, unit: str = "") -> str:
    if value is None or kind in (None, "undefined") or (isinstance(value, float) and math.isnan(value)):
        return "-"
    prefix = {"between": "", "exact": "", "at-least": "≥ ", "at-most": "≤ ", "below-range": "< ",
              "not-reached": "> "}.get(kind, "")
    return f"{prefix}{value:.2f}{unit}"


def cases_table(frame: pd.DataFrame, width: int) -> str:
    rows = []
    for r in frame.itertuples():
        flags = [name for name, on in (("SATURATED", r.saturated is True), ("CLIENT-BOUND", r.client_bound)) if on]
        rows.append([str(r.cell), str(r.drafter_id), _rate(r.rate), _fmt(r.scheduled_rps), _fmt(r.achieved_rps),
                     str(r.requests),
                     _fmt(r.latency_mean_s), _fmt(r.latency_p90_s), _fmt(r.ttft_median_s, 3),
                     _fmt(r.tpot_median_s, 1, 1e3), _fmt(r.slo_attainment, 0, 100, "%"), _fmt(r.goodput_rps),
                     _fmt(r.goodput_tps, 1), _fmt(r.send_error_p99_ms, 1), _fmt(r.loop_lag_p99_ms, 1),
                     _fmt(r.loop_cpu_share), " ".join(flags)])
    return _table("speedbench load: per case (rate: asked; sent/s: the seeded schedule's own; latency = end-to-end from "
                  "submission; goodput = requests / tokens per second meeting every SLO)",
                  ["cell", "drafter", "rate", "sent/s", "done/s", "reqs", "lat mean", "lat p90", "TTFT p50", "TPOT ms",
                   "SLO met", "good req/s", "good tok/s", "send p99 ms", "lag p99 ms", "loop CPU", "flags"],
                  rows, width)


def latency_table(rows: pd.DataFrame, sweeps: pd.DataFrame, width: int) -> str:
    text = ""
    for (group, drafter), data in rows.groupby(["group", "drafter_id"], sort=False):
        cells = [[_rate(r.rate), _fmt(r.none_mean_s), _fmt(r.none_p90_s), _fmt(r.sd_mean_s), _fmt(r.sd_p90_s),
                  _fmt(r.sd_mean_s / r.none_mean_s if r.none_mean_s else math.nan, 2, suffix="x"),
                  f"{_fmt(r.none_decode_s)} / {_fmt(r.predicted_none_decode_s)}",
                  f"{_fmt(r.sd_decode_s)} / {_fmt(r.predicted_sd_decode_s)}",
                  f"{_fmt(r.none_attainment, 0, 100, '%')} / {_fmt(r.sd_attainment, 0, 100, '%')}",
                  " ".join(flag for flag, on in (("SAT-off", r.saturated_none), ("SAT-on", r.saturated_sd),
                                                  ("CLIENT-BOUND", r.client_bound)) if on)]
                 for r in data.itertuples()]
        text += _table(f"latency vs request rate: {group}, {drafter} vs none (seconds; decode = measured / SmartSpec)",
                       ["rate", "off mean", "off p90", "on mean", "on p90", "on/off", "off decode", "on decode",
                        "SLO met off/on", "flags"], cells, width)
        match = sweeps[(sweeps["group"] == group) & (sweeps["drafter_id"] == drafter)] if not sweeps.empty else sweeps
        if not match.empty:
            text += sweep_lines(match.iloc[0])
    return text


def _crossover(value: Any, kind: str | None) -> str:
    if kind == "below-range":
        return f"SD slower at every rate (from {value:g} req/s)"
    if kind == "not-reached":
        return f"SD faster at every rate (up to {value:g} req/s)"
    if kind == "between":
        return f"{value:.2f} req/s"
    return "-"


def sweep_lines(s: Any) -> str:
    lines = [f"crossover rate above which SD is slower: mean {_crossover(s.crossover_mean, s.crossover_mean_kind)}, "
             f"p90 {_crossover(s.crossover_p90, s.crossover_p90_kind)}; decode-only measured "
             f"{_crossover(s.crossover_decode, s.crossover_decode_kind)}, SmartSpec-predicted "
             + (f"{s.predicted_crossover:.2f} req/s" if _finite(s.predicted_crossover) else "none below saturation")]
    if s.target_attainment is not None and not pd.isna(s.target_attainment):
        lines.append(f"highest sustainable rate at {s.target_attainment * 100:.0f}% SLO attainment: SD off "
                     f"{_bounded(s.sustainable_rate_none, s.sustainable_kind_none, ' req/s')}, SD on "
                     f"{_bounded(s.sustainable_rate, s.sustainable_kind, ' req/s')}; speedup at equal SLO attainment "
                     f"{_bounded(s.speedup_at_equal_attainment, s.speedup_kind, 'x')}")
    else:
        lines.append("no SLO given (--speedbench-slo ttft=..,tpot=..,e2el=..): no sustainable rate")
    if isinstance(s.smartspec_fit_source, str):
        lines.append(f"SmartSpec fit: {s.smartspec_fit_source}, R² {_fmt(s.smartspec_r2, 3)}; predicted saturation "
                     f"SD off {_fmt(s.predicted_saturation_none)} req/s, SD on {_fmt(s.predicted_saturation_sd)} req/s; "
                     f"{s.smartspec_note}")
    elif isinstance(s.smartspec_note, str):
        lines.append(s.smartspec_note)
    return "".join(f"{line}\n" for line in lines)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value) and not math.isinf(value)


def harness_table(results: Sequence[dict[str, Any]], width: int) -> str:
    rows = []
    for r in results:
        where = "host" if r["mode"] == "host" else f"{r['processes']} proc"
        rows.append([f"{r['streams']}", f"{r['target_events_per_s'] / 1000:g}k", f"{r['emission']}",
                     f"{where} {r['loop']}", _fmt(r["events_per_s"], 0), _fmt(r["stamp_lag_p50_ms"]),
                     _fmt(r["stamp_lag_p99_ms"]), _fmt(r["stamp_lag_max_ms"], 1), _fmt(r["monitor_lag_p99_ms"]),
                     _fmt(r["client_cpu_share"]), _fmt(r["cpu_us_per_event"], 1), _fmt(r["burst_ms"], 1),
                     " ".join(f"{v:.1f}" for v in r["load_average"])])
    text = _table(f"speedbench harness cost on FakeEngine ({os.cpu_count()} cores; lag = stamp − emission; grid: every "
                  "stream's step emitted at once, free: each stream paced from its own last chunk; burst = CPU per "
                  "event × streams per process)",
                  ["streams", "target", "emission", "client", "events/s", "lag p50 ms", "lag p99 ms", "lag max ms",
                   "monitor p99 ms", "client CPU", "CPU µs/event", "burst ms", "load avg 1/5/15 min"], rows, width, keep=4)
    for emission in ("grid", "free"):
        goal = [r for r in results if r["streams"] == HARNESS_GOAL["streams"] and r["emission"] == emission
                and r["target_events_per_s"] == HARNESS_GOAL["events_per_s"]]
        if not goal:
            continue
        best = min(goal, key=lambda r: r["stamp_lag_p99_ms"])
        met = best["stamp_lag_p99_ms"] <= HARNESS_GOAL["p99_ms"]
        text += (f"goal p99 lag ≤ {HARNESS_GOAL['p99_ms']} ms at {HARNESS_GOAL['streams']} streams / "
                 f"{HARNESS_GOAL['events_per_s'] // 1000}k events/s ({emission}): {'met' if met else 'NOT met'} "
                 f"(best {best['stamp_lag_p99_ms']:.2f} ms, {best['mode']} {best['processes']} proc {best['loop']}"
                 + (f"; its burst floor {best['burst_ms']:.1f} ms" if emission == "grid" else "") + ")\n")
    return text


class LoadReport:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.written: list[Path] = []
        self.harness: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from speedbench_plugin.load.settings import HARNESS_PROPERTY

        if report.when == "call":
            self.harness += [value for name, value in report.user_properties
                             if name == HARNESS_PROPERTY and isinstance(value, dict)]

    def pytest_speedbench_session_sections(self, config: pytest.Config, records: Sequence[Record]
                                           ) -> dict[str, dict[str, Any]]:
        from speedbench_plugin.load.analysis import session_sections
        from speedbench_plugin.load.settings import load_settings

        return session_sections(records, load_settings(config).slo_target)

    def pytest_speedbench_records(self, config: pytest.Config, records: Sequence[Record]) -> None:
        from speedbench_plugin.load import analysis
        from speedbench_plugin.load.plot import latency_plots

        frame = analysis.cases_frame(records)
        if frame.empty:
            return
        out = run_directory(config)
        frame.to_csv(out / "load_cases.csv", index=False)
        self.written = [out / "load_cases.csv"]
        rows, sweeps = analysis.latency_rows(records), analysis.sweep_rows(records)
        if not rows.empty:
            rows.to_csv(out / "load_latency_vs_rate.csv", index=False)
            self.written.append(out / "load_latency_vs_rate.csv")
        if not sweeps.empty:
            sweeps.to_csv(out / "load_sweeps.csv", index=False)
            self.written.append(out / "load_sweeps.csv")
        self.written += latency_plots(rows, sweeps, out)

    def pytest_speedbench_terminal_summary(self, config: pytest.Config, records: Sequence[Record],
                                           terminalreporter: Any) -> None:
        from speedbench_plugin.load import analysis

        frame = analysis.cases_frame(records)
        if frame.empty:
            return
        width = max(terminalreporter._tw.fullwidth, 160)
        write = terminalreporter.write
        write(cases_table(frame, width))
        notes = []
        bound = frame[frame["client_bound"]]
        for r in bound.itertuples():
            notes.append(f"CLIENT-BOUND {r.case_id}: {r.client_bound_reasons}; its speed figures are the client's, "
                         "not the engine's")
        saturated = frame[frame["saturated"].eq(True)]
        if not saturated.empty:
            notes.append(f"SATURATED: {len(saturated)} case(s) where queueing grew through the run (TTFT of the last "
                         "third of arrivals ≥ 2× the first third's): the engine cannot sustain that rate")
        unjudged = frame[frame["saturated"].isna()]
        if not unjudged.empty:
            notes.append(f"saturation not judged for {len(unjudged)} case(s): fewer than 9 completed requests")
        processes = sorted(set(frame["clients"]))
        load = next(r.section("load") for r in records if r.section("load"))
        notes.append(f"client processes: {', '.join(map(str, processes))} — {load['clients']['why']}")
        write("".join(f"{n}\n" for n in notes))
        rows, sweeps = analysis.latency_rows(records), analysis.sweep_rows(records)
        if not rows.empty:
            write(latency_table(rows, sweeps, width))
        elif not sweeps.empty:
            for s in sweeps.itertuples():
                if s.sustainable_kind:
                    write(f"{s.group} {s.drafter_id}: highest sustainable rate at {s.target_attainment * 100:.0f}% SLO "
                          f"attainment {_bounded(s.sustainable_rate, s.sustainable_kind, ' req/s')}\n")
        if self.written:
            write(f"load results: {', '.join(display(p, config) for p in self.written)}\n")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.harness and not hasattr(self.config, "workerinput"):
            terminalreporter.section("speedbench harness")
            terminalreporter.write(harness_table(self.harness, max(terminalreporter._tw.fullwidth, 160)))
