"""Throughput sweeps (Pareto fronts, speedup against concurrency, random against real inputs, draft
length, dynamic-SD tables), open-loop load, and any other record section, laid out generically."""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from speedbench_plugin.record import Record
from speedbench_plugin.report import figures as fg
from speedbench_plugin.report.common import Context, case_name, ordered
from speedbench_plugin.report.model import Run
from speedbench_plugin.report.tables import BEST, Block, Column, Section, Table

REAL_TIERS = ("low_entropy", "mixed", "high_entropy")
RANDOM_TIER = "random"
# Sections the report lays out itself; any other is shown generically.
KNOWN_SECTIONS = {"speedup_vs_none", "comparison", "throughput", "dynamic_validation", "load"}


def _cells(records: Sequence[Record]) -> dict[tuple[int | None, str | None], list[Record]]:
    cells: dict[tuple[int | None, str | None], list[Record]] = defaultdict(list)
    for r in records:
        cells[(r.case.bucket, r.case.tier)].append(r)
    return dict(sorted(cells.items(), key=lambda item: (item[0][0] or 0, str(item[0][1]))))


def _gain(record: Record, key: str) -> float | None:
    value = (record.section("speedup_vs_none") or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _sweep_block(ctx: Context, run: Run, cell: tuple[int | None, str | None], records: list[Record]) -> Block:
    by_drafter: dict[str, list[Record]] = defaultdict(list)
    for r in ordered(records, ctx.palette):
        by_drafter[r.case.drafter.id].append(r)
    pareto, speedup = [], []
    for drafter, cases in by_drafter.items():
        cases.sort(key=lambda r: r.case.concurrency)
        colour, marker = ctx.palette.colour(drafter), ctx.palette.marker(drafter)
        label = "SD off (none)" if drafter == "none" else f"SD on ({drafter})"
        pareto.append(fg.Series(label, [r.speed.user_tps_median or 0.0 for r in cases], [r.speed.output_tps for r in cases],
                                colour, marker, "--" if drafter == "none" else "-",
                                annotations=[f"c{r.case.concurrency}" for r in cases]))
        if drafter != "none":
            speedup.append(fg.Series(label, [r.case.concurrency for r in cases], [_gain(r, "output_tps") for r in cases],
                                     colour, marker))
    panels = [fg.Panel("Pareto front: server against user view", "median user TPS (tokens/s per request)",
                       "output TPS (tokens/s, all requests)", pareto)]
    if any(y is not None for s in speedup for y in s.ys):
        panels.append(fg.Panel("speedup vs none against concurrency", "concurrency", "output TPS speedup (x)", speedup,
                               log_x=True, hline=1.0))
    table = Table([Column("drafter"), Column("conc", "int"), Column("output TPS", "f1"), Column("user TPS median", "f1"),
                   Column("TTFT median ms", "ms"), Column("AL", "f2"), Column("speedup output", "x"),
                   Column("speedup user", "x"), Column("proxy", "x"),
                   Column("decode goodput", "f1", "output TPS over pure decode steps (throughput section)")])
    for drafter, cases in by_drafter.items():
        for r in cases:
            table.add([drafter, r.case.concurrency, r.speed.output_tps, r.speed.user_tps_median, r.speed.ttft_median_s,
                       r.acceptance.acceptance_length, _gain(r, "output_tps"), _gain(r, "user_tps"), _gain(r, "proxy"),
                       (r.section("throughput") or {}).get("decode_goodput")])
    bucket, tier = cell
    return Block(ctx.run_title(f"Sweep: bucket {bucket}, tier {tier}", run), table,
                 lambda: fg.line_panels(panels), "Each point is one case (cN: its concurrency); SD off is dashed. "
                 "Speedups from each case's speedup_vs_none section.", headline=True)


def _random_block(ctx: Context, run: Run, records: list[Record]) -> Block | None:
    tiers = [t for t in (*REAL_TIERS, RANDOM_TIER) if any(r.case.tier == t for r in records)]
    if RANDOM_TIER not in tiers or len(tiers) < 2:
        return None
    rows: dict[tuple[Any, str, int], dict[str, float | None]] = defaultdict(dict)
    for r in ordered(records, ctx.palette):
        if r.case.dynamic_table is None:
            rows[(r.case.bucket, r.case.drafter.id, r.case.concurrency)][str(r.case.tier)] = r.speed.output_tps
    table = Table([Column("bucket", "int"), Column("drafter"), Column("conc", "int")]
                  + [Column(f"{t} TPS", "f1") for t in tiers])
    drafters = list(ctx.palette.colours)
    for (bucket, drafter, concurrency), values in sorted(rows.items(), key=lambda i: (
            i[0][0] or 0, drafters.index(i[0][1]) if i[0][1] in drafters else len(drafters), i[0][2])):
        table.add([bucket, drafter, concurrency] + [values.get(t) for t in tiers])
    return Block(ctx.run_title("Random against real inputs (output TPS per tier)", run), table, notes=[
        ("The record figures side by side. The overstatement (random / real − 1) is computed by the throughput "
        "analysis at the end of the sweep (throughput_random_vs_real.csv in the run's folder) and is not stored in "
        "the records, so this report does not show it.")])


def _draft_length_blocks(ctx: Context, run: Run, records: list[Record]) -> list[Block]:
    from speedbench_plugin.throughput.analysis import family_of

    blocks = []
    fixed = [r for r in records if r.case.dynamic_table is None]
    for (bucket, tier), cell in _cells(fixed).items():
        families = sorted({family_of(r.case.drafter) for r in cell if r.case.drafter.enabled})
        for family in families:
            members = [r for r in cell if not r.case.drafter.enabled or family_of(r.case.drafter) == family]
            ks = sorted({r.case.k for r in members})
            if len([k for k in ks if k]) < 2:
                continue
            tps = {(r.case.concurrency, r.case.k): r.speed.output_tps for r in members}
            table = Table([Column("conc", "int")] + [Column(f"k={k}" if k else "none", "f1") for k in ks])
            for concurrency in sorted({c for c, _ in tps}):
                values = [tps.get((concurrency, k)) for k in ks]
                present = [v for v in values if v is not None]
                best = values.index(max(present)) + 1 if present else None
                table.add([concurrency] + values, cells={best: BEST} if best is not None else None)
            blocks.append(Block(ctx.run_title(f"Output TPS by draft length: bucket {bucket}, tier {tier}, {family}", run),
                                table, notes=[
                                    ("Highlighted: the highest output TPS measured in the row. The chosen k per "
                                    "concurrency (measured, SmartSpec, SSSD) and the emitted dynamic-SD table are "
                                    "written by the sweep (throughput_best_k.csv, dynamic_tables.json) and are not in "
                                    "the records.")]))
    return blocks


def _dynamic_block(ctx: Context, run: Run, records: list[Record]) -> Block | None:
    dynamic = [r for r in ordered(records, ctx.palette) if r.case.dynamic_table is not None]
    if not dynamic:
        return None
    table = Table([Column("case"), Column("dynamic table (batch size, k)"), Column("output TPS", "f1"),
                   Column("best fixed k", "text"), Column("best fixed TPS", "f1"),
                   Column("dynamic / best fixed", "x"), Column("note", "prose")])
    for r in dynamic:
        check = r.section("dynamic_validation") or {}
        table.add([case_name(r, True), json.dumps(r.case.dynamic_table), r.speed.output_tps, check.get("best_fixed_k"),
                   check.get("best_fixed_tps"), check.get("dynamic_vs_best_fixed"), check.get("note")])
    return Block(ctx.run_title("Dynamic-SD table against the best fixed k", run), table)


def throughput(ctx: Context) -> Section | None:
    section = Section("throughput", "Throughput", [
        ("Concurrency sweeps on exact-length prompts: output TPS (the server's view) against median user TPS (the "
        "user's view), speculative decoding on against off, and its speedup as load grows."),
    ])
    for run in ctx.report.runs:
        records = [r for r in run.records if r.case.split == "throughput"]
        if not records:
            continue
        for cell, cases in _cells([r for r in records if r.case.dynamic_table is None]).items():
            section.blocks.append(_sweep_block(ctx, run, cell, cases))
        for block in (_random_block(ctx, run, records), *_draft_length_blocks(ctx, run, records),
                      _dynamic_block(ctx, run, records)):
            if block is not None:
                section.blocks.append(block)
    return section


# --- any section, generically ----------------------------------------------------------------------


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rows_of(value: Any) -> list[Mapping[str, Any]] | None:
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return list(value)
    return None


def generic_blocks(ctx: Context, name: str, items: Sequence[tuple[Run, Record, Any]], row_limit: int = 60) -> list[Block]:
    """A section as tables: its scalar fields one row per case; each list of rows as its own table."""
    blocks = []
    scalars: list[str] = []
    for _, _, value in items:
        if isinstance(value, Mapping):
            scalars += [k for k, v in value.items() if _scalar(v) and k not in scalars]
    multi = ctx.report.multi
    summary = Table(([Column("run")] if multi else []) + [Column("case")] + [Column(k, "text") for k in scalars]
                    + [Column("more")])
    for run, record, value in items:
        if isinstance(value, Mapping):
            fields = [value.get(k) for k in scalars]
            rest = {k: v for k, v in value.items() if not _scalar(v)}
            more = ", ".join(f"{k}: {len(v)} rows" if _rows_of(v) is not None else f"{k}: {_short(v, 80)}"
                             for k, v in rest.items())
        else:
            fields, more = [None] * len(scalars), _short(value)
        summary.add(([run.label] if multi else []) + [record.case_id] + [
            f if _scalar(f) and not isinstance(f, float) else _short(f) if not isinstance(f, float) else f"{f:.4g}"
            for f in fields] + [more])
    blocks.append(Block(f"Section “{name}” per case", summary))
    for run, record, value in items:
        nested = {k: _rows_of(v) for k, v in value.items()} if isinstance(value, Mapping) else {"rows": _rows_of(value)}
        for key, rows in nested.items():
            if not rows:
                continue
            columns = list(dict.fromkeys(c for row in rows for c in row))
            table = Table([Column(c) for c in columns])
            for row in rows[:row_limit]:
                table.add([row.get(c) if _scalar(row.get(c)) and not isinstance(row.get(c), float)
                           else f"{row[c]:.4g}" if isinstance(row.get(c), float) else _short(row.get(c), 60)
                           for c in columns])
            notes = [f"{len(rows) - row_limit} more rows in the record"] if len(rows) > row_limit else []
            blocks.append(Block(ctx.run_title(f"{name}.{key}: {record.case_id}", run), table, notes=notes))
    return blocks


def load(ctx: Context) -> Section | None:
    items = ctx.report.sections_named("load")
    if not items:
        return None
    return Section("load", "Load", ["Open-loop load: what each case's load section holds, as recorded."],
                   generic_blocks(ctx, "load", items))


def other_sections(ctx: Context) -> Section | None:
    names = sorted({n for _, r in ctx.report.records() for n in r.sections} - KNOWN_SECTIONS)
    if not names:
        return None
    section = Section("sections", "Other record sections", [
        "Sections that extensions added to the records, shown as they are recorded."])
    for name in names:
        section.blocks += generic_blocks(ctx, name, ctx.report.sections_named(name))
    return section
