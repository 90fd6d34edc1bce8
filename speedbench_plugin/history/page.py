"""The history as the report's sections: the runs, every shift the gate's tests found, and one
section per series (a table of every run's figures, the figures drawn across runs). Rendered by
the report's HTML and Markdown writers; every number is a record's or the gate's."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from speedbench_plugin import __version__
from speedbench_plugin.cache import atomic_write_text
from speedbench_plugin.history.load import history_runs, run_time
from speedbench_plugin.history.series import FIGURES, Figure, Point, Series, build_series
from speedbench_plugin.report.figures import Track, history_panels
from speedbench_plugin.report.html import render_page
from speedbench_plugin.report.markdown import sections_markdown
from speedbench_plugin.report.model import Run
from speedbench_plugin.report.tables import BAD, GOOD, Block, Column, Section, Table

DRAWN = ("al", "ar", "output_tps", "user_tps", "ttft", "cpu_s_per_token", "energy_per_token")
SCALE = {"ms": 1e3}
STATUS_FLAG = {"regressed": BAD, "improved": GOOD}


def _runs_section(runs: Sequence[Run]) -> Section:
    table = Table([Column("#", "int"), Column("run"), Column("ran at (UTC)"), Column("file"), Column("kind"),
                   Column("engines"), Column("speedbench"), Column("cases", "int")])
    for index, run in enumerate(runs):
        table.add([index + 1, run.label, run_time(run).strftime("%Y-%m-%d %H:%M:%S"), str(run.path), run.kind,
                   ", ".join(run.engines), run.speedbench_version, len(run.records)])
    return Section("runs", "Runs", ["Oldest first, by the time each results file records (else the file's modification time)."],
                   [Block("Runs in time order", table, headline=True)])


def _figure(key: str) -> Figure:
    return next(f for f in FIGURES if f.key == key)


def _shifts_section(series: Sequence[Series]) -> Section:
    table = Table([Column("series", "prose"), Column("figure"), Column("run"), Column("shift", "prose"),
                   Column("before", "f3"), Column("after", "f3"), Column("interval of the change", "text",
                   "the gate's interval (acceptance: absolute; speed: relative)"),
                   Column("p (adjusted)", "f3"), Column("what changed", "prose")])
    for s in series:
        for previous, point in zip(s.points, s.points[1:]):
            for key, mark in point.marks.items():
                figure = _figure(key)
                result = point.metric(figure.gate_metric or "")
                ci = (f"{result.ci[0]:+.3g} … {result.ci[1]:+.3g}" if result and result.ci and None not in result.ci else None)
                table.add([s.title, figure.title, point.run.label, mark, figure.read(previous.record), figure.read(point.record),
                           ci, result.p_adj if result else None, "; ".join(point.changes) or "nothing recorded"],
                          STATUS_FLAG.get(result.status if result else ""))
    intro = [("A shift starts at a run the regression gate's own tests find regressed or improved against the run "
             "before (AL and AR: paired bootstrap over the same requests; speed: one-sided Mann-Whitney U over rounds; "
             "Holm-adjusted across the series). Sustained: the next run does not move back; reverted: it does.")]
    notes = [] if len(table) else ["No shift: the gate's tests find no step regressed or improved."]
    return Section("shifts", "Shifts", intro, [Block("Where a shift starts", table, notes=notes, headline=True)])


def _series_table(s: Series) -> Table:
    shown = [f for f in FIGURES if any(v is not None for v in s.values(f))]
    table = Table([Column("run"), Column("drafter"), Column("engine")]
                  + [Column(f.title + (f" ({f.unit})" if f.unit not in ("x", "share") else ""), f.kind) for f in shown]
                  + [Column("speedup vs none", "x", "output TPS over the none drafter's, same run"),
                     Column("gate vs previous run"), Column("what changed", "prose")])
    for point in s.points:
        speedup = (point.record.section("speedup_vs_none") or {}).get("output_tps")
        status = point.comparison.status if point.comparison else None
        cells = {3 + i: BAD for i, f in enumerate(shown) if f.key in point.marks and "drop" in point.marks[f.key]}
        table.add([point.run.label, str(point.record.case.drafter), point.record.case.engine_version]
                  + [f.read(point.record) for f in shown]
                  + [speedup, status, "; ".join(point.changes)], STATUS_FLAG.get(status or ""), cells)
    return table


def _band(point: Point, previous: Point | None, figure: Figure) -> tuple[float, float] | None:
    return point.band(figure, figure.read(previous.record) if previous else None)


def _series_block(s: Series, labels: Sequence[str]) -> Block:
    tracks = []
    for key in DRAWN:
        figure = _figure(key)
        values = s.values(figure)
        if all(v is None for v in values):
            continue
        tracks.append(Track(figure.title, figure.unit, [float(p.run_index) for p in s.points], values,
                            [_band(p, prev, figure) for prev, p in zip([None, *s.points[:-1]], s.points)],
                            [p.marks.get(key) for p in s.points], scale=SCALE.get(figure.kind, 1.0)))
    notes = sorted({n for p in s.points if p.comparison for n in p.comparison.notes})
    return Block(s.title, _series_table(s), (lambda: history_panels(tracks, labels)) if tracks else None,
                 "Each figure as its records give it, in run order. Grey bars: the gate's interval of the change from "
                 "the previous run, on the previous run's value. Dashed vermillion line: a shift starts there.",
                 notes=notes[:8], headline=True)


def history_sections(runs: Sequence[Run]) -> tuple[list[Section], list[Series]]:
    series = build_series(runs)
    labels = [run.label for run in runs]
    by_case: dict[str, list[Block]] = {}
    for s in series:
        by_case.setdefault(f"{s.key[0]} {s.key[1]}", []).append(_series_block(s, labels))
    case_sections = [Section(f"case-{i}", f"Case {name}", [], blocks) for i, (name, blocks) in enumerate(sorted(by_case.items()))]
    return [_runs_section(runs), _shifts_section(series), *case_sections], series


def render_history(runs: Sequence[Run], fmt: str = "html", html_name: str | None = None) -> str:
    sections, series = history_sections(runs)
    subtitle = (f"{len(runs)} runs from {run_time(runs[0]):%Y-%m-%d %H:%M} to {run_time(runs[-1]):%Y-%m-%d %H:%M} UTC, "
                f"{len(series)} series")
    if fmt == "md":
        head = ["## speedbench history", "", subtitle, ""] + ([f"Full page with figures: `{html_name}`.", ""] if html_name else [])
        return "\n".join(head + sections_markdown(sections)) + "\n"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    footer = (f"speedbench {__version__}, history written {stamp}. Every figure is read from the runs' records; bands and "
              "shifts are the regression gate's statistics between consecutive runs of a series.")
    return render_page("speedbench history", subtitle, sections, footer)


def write_history(paths: Sequence[str | Path], target: Path, fmt: str | None = None, html_name: str | None = None) -> Path:
    chosen = fmt or ("md" if target.suffix.lower() in (".md", ".markdown") else "html")
    atomic_write_text(target, render_history(history_runs(paths), chosen, html_name))
    return target


