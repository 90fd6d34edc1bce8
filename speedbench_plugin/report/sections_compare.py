"""Sections that set two things side by side: runs (per-case deltas between their record figures,
computed here and named as such) and the regression gate (the ``comparison`` section the gate
wrote into each record: the report only lays it out)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from speedbench_plugin.record import Record
from speedbench_plugin.report import figures as fg
from speedbench_plugin.report.common import Context, case_name, ordered, shown, sweeps_concurrency
from speedbench_plugin.report.model import CasePair, RunComparison
from speedbench_plugin.report.palette import IMPROVED_TINT, REGRESSED_TINT
from speedbench_plugin.report.sections_case import matrix_block
from speedbench_plugin.report.tables import BAD, GOOD, WARN, Block, Column, Section, Table

# --- runs side by side ---------------------------------------------------------------------------


def _pair_label(pair: CasePair) -> str:
    a, b = pair.reference.case.drafter.id, pair.other.case.drafter.id
    return a if a == b else f"{a} → {b}"


def _matching_block(comparison: RunComparison) -> Block:
    table = Table([Column("what"), Column("cases", "int"), Column("which", "prose")])
    for how, count in comparison.matched_by.items():
        table.add([f"paired by {how}", count, ""])
    table.add([f"only in {comparison.reference.label}", len(comparison.only_reference),
               shown([r.case_id for r in comparison.only_reference])], flag=WARN if comparison.only_reference else None)
    table.add([f"only in {comparison.other.label}", len(comparison.only_other),
               shown([r.case_id for r in comparison.only_other])], flag=WARN if comparison.only_other else None)
    notes = list(comparison.ambiguous)
    if not comparison.pairs:
        notes.insert(0, f"{comparison.reference.label} and {comparison.other.label} share no case (by id, or by "
                        "labels, drafter or drafter method, and concurrency): nothing to set side by side.")
    return Block(f"Which cases were paired: {comparison.other.label} against {comparison.reference.label}", table,
                 notes=notes, headline=True)


def _deltas_table(comparison: RunComparison) -> Table:
    ref, other = comparison.reference.label, comparison.other.label
    table = Table([
        Column("case", help="first run's case: label · drafter"), Column("paired with", help="the later run's case"),
        Column("matched by"), Column(f"AL {ref}", "f3"), Column(f"AL {other}", "f3"),
        Column("Δ AL", "d3"), Column("Δ AR", "d3"), Column(f"output TPS {ref}", "f1"), Column(f"output TPS {other}", "f1"),
        Column("Δ output TPS", "dpct"), Column("Δ user TPS", "dpct"), Column("Δ TTFT", "dpct"), Column("notes", "prose"),
    ])
    for pair in comparison.pairs:
        al, ar, out = pair.delta("AL"), pair.delta("AR"), pair.delta("output TPS")
        notes = pair.notes
        sweep = pair.reference.case.concurrency != 1 or pair.other.case.concurrency != 1
        table.add([case_name(pair.reference, sweep), case_name(pair.other, sweep),
                   pair.matched_by, al.reference, al.other, al.change, ar.change, out.reference, out.other, out.relative,
                   pair.delta("user TPS median").relative, pair.delta("TTFT median").relative, "; ".join(notes)],
                  flag=WARN if notes else None)
    return table


def _delta_matrix(ctx: Context, comparison: RunComparison, split: str) -> list[Block]:
    pairs = [p for p in comparison.pairs if p.reference.case.split == split and (p.reference.case.k or p.other.case.k)]
    if not pairs:
        return []
    by_other = {id(p.other): p for p in pairs}

    def change(name: str, relative: bool) -> Any:
        def read(record: Record) -> float | None:
            delta = by_other[id(record)].delta(name)
            return delta.relative if relative else delta.change
        return read

    others = [p.other for p in pairs]
    what = "category" if split == "qualitative" else "bucket/tier"
    title = f"{comparison.other.label} − {comparison.reference.label}"
    def row(record: Record, sweep: bool) -> str:
        return _pair_label(by_other[id(record)]) + (f" c{record.case.concurrency}" if sweep else "")

    blocks = [matrix_block(ctx, others, change("AL", False), title=f"Δ AL by {what} ({split}): {title}",
                           figure_title=f"change in AL, {title}", label="Δ AL (tokens per step)", kind="d2",
                           diverging=True, summary="mean Δ", row_key=row,
                           caption="Δ between the two runs' record AL for each paired case (later − first), "
                                   "computed by the report; a row names the first run's drafter → the later run's.")]
    if any(p.delta("output TPS").relative is not None for p in pairs):
        blocks.append(matrix_block(ctx, others, change("output TPS", True), title=f"Δ output TPS by {what} ({split}): {title}",
                                   figure_title=f"relative change in output TPS, {title}", label="Δ output TPS",
                                   kind="dpct", diverging=True, summary="mean Δ", row_key=row,
                                   caption="Relative change of the record's output TPS (other / reference − 1), "
                                           "computed by the report; not a judged regression (see the gate)."))
    return blocks


def runs_compared(ctx: Context) -> Section | None:
    if not ctx.report.comparisons:
        return None
    section = Section("runs", "Runs side by side", [
        (f"Every later run against the first ({ctx.report.runs[0].label}). Cases are paired by case id, else by their "
        "labels (category, or bucket/tier), drafter and concurrency, else by labels, drafter method and concurrency "
        "where that names one case on each side. Deltas are between the runs' record figures (later − first), "
        "computed by the report: they are not statistical verdicts."),
    ])
    for comparison in ctx.report.comparisons:
        section.blocks.append(_matching_block(comparison))
        for split in sorted({p.reference.case.split for p in comparison.pairs}):
            section.blocks += _delta_matrix(ctx, comparison, split)
        if comparison.pairs:
            section.blocks.append(Block(f"Per case: {comparison.other.label} against {comparison.reference.label}",
                                        _deltas_table(comparison), headline=True))
    return section


# --- the regression gate -------------------------------------------------------------------------


def _judge() -> Any:
    from speedbench_plugin.compare import judge  # scipy, only when a record holds a comparison

    return judge


def gate_rows(ctx: Context) -> list[tuple[str, Record, dict[str, Any]]]:
    return [(run.label, r, r.section("comparison")) for run in ctx.report.runs
            for r in ordered(run.records, ctx.palette) if isinstance(r.section("comparison"), dict)]


def _metric_rows(ctx: Context, items: Sequence[tuple[str, Record, dict[str, Any]]], kind: str) -> tuple[Table, list[fg.RowMark]]:
    judge = _judge()
    table = Table([Column("case"), Column("metric"), Column("status"), Column("baseline", "f3"), Column("current", "f3"),
                   Column("change", "d3" if kind == "acceptance" else "dpct"), Column("CI low", "d3" if kind == "acceptance" else "dpct"),
                   Column("CI high", "d3" if kind == "acceptance" else "dpct"),
                   Column("threshold", "f3" if kind == "acceptance" else "pct"), Column("p adj", "text"), Column("n", "text"),
                   Column("note", "prose")])
    marks = []
    sweep = sweeps_concurrency([record for _, record, _ in items])
    for _, record, comparison in items:
        for m in comparison.get("metrics") or []:
            if m.get("kind") != kind:
                continue
            status = m.get("status")
            ci = m.get("ci") or (None, None)
            flag = BAD if status == judge.REGRESSED else GOOD if status == judge.IMPROVED else None
            n = m.get("n") if m.get("n_current") is None else f"{m.get('n')} / {m.get('n_current')}"
            p_adj = m.get("p_adj")
            table.add([record.case_id, m.get("metric"), status, m.get("baseline"), m.get("current"), m.get("change"),
                       ci[0], ci[1], m.get("threshold"), f"{p_adj:.1e}" if isinstance(p_adj, (int, float)) else None, n,
                       m.get("note")], flag=flag)
            headline = m.get("metric") in ("AL", "AR") or kind == "speed" or flag is not None
            if status == judge.NOT_COMPARABLE or m.get("change") is None or not headline:
                continue
            # Where the threshold lies: a drop is worse, except for latency (TTFT), where a rise is.
            worse_up = kind == "speed" and m.get("metric", "").startswith("TTFT")
            threshold = m.get("threshold")
            marks.append(fg.RowMark(
                f"{status.upper() if flag else status} {case_name(record, sweep)} {m.get('metric')}", ctx.colour(record),
                value=m.get("change"), marker=ctx.marker(record), lo=ci[0], hi=ci[1],
                extras=[((threshold if worse_up else -threshold) if threshold is not None else None, "|")],
                highlight=REGRESSED_TINT if status == judge.REGRESSED else IMPROVED_TINT if status == judge.IMPROVED else None))
    return table, marks


def _gate_summary(items: Sequence[tuple[str, Record, dict[str, Any]]]) -> Block:
    judge = _judge()
    table = Table([Column("case"), Column("baseline case"), Column("status"), Column("regressed"), Column("improved"),
                   Column("reasons not judged, and notes", "prose")])
    counts = {status: 0 for status in judge.STATUS_ORDER}
    for _, record, c in items:
        status = c.get("status", "?")
        counts[status] = counts.get(status, 0) + 1
        metrics = c.get("metrics") or []
        reasons = judge.not_judged_reasons(c) + [n for n in c.get("notes") or [] if n not in judge.not_judged_reasons(c)]
        other = c.get("baseline_case_id")
        table.add([record.case_id, "same id" if other == record.case_id else other or "–", status,
                   ", ".join(m["metric"] for m in metrics if m.get("status") == judge.REGRESSED),
                   ", ".join(m["metric"] for m in metrics if m.get("status") == judge.IMPROVED),
                   "; ".join(reasons)],
                  flag=BAD if status == judge.REGRESSED else GOOD if status == judge.IMPROVED else
                  WARN if status == judge.NOT_COMPARABLE else None)
    baselines = sorted({str(c.get("baseline_path")) for _, _, c in items if c.get("baseline_path")})
    notes = [f"{len(items)} cases against {', '.join(baselines) or 'the baseline'}: "
             + ", ".join(f"{counts[s]} {s}" for s in judge.STATUS_ORDER)]
    return Block("Verdicts per case", table, caption=notes[0], headline=True)


def gate(ctx: Context) -> Section | None:
    items = gate_rows(ctx)
    if not items:
        return None
    section = Section("gate", "Regression gate", [
        ("The gate's verdicts as recorded in each case's comparison section (--speedbench-compare). Acceptance "
        "(AL, AR, pp) is paired over the same requests, its change absolute; speed is per round, its change relative. "
        "A figure regresses when the change passes the threshold, its confidence interval lies wholly on the worse "
        "side, and the adjusted p-value passes alpha."),
    ])
    section.blocks.append(_gate_summary(items))
    for kind, title, xlabel in (("acceptance", "Acceptance: change and its confidence interval", "change (absolute)"),
                                ("speed", "Speed: relative change and its confidence interval", "change (relative)")):
        table, marks = _metric_rows(ctx, items, kind)
        if not len(table):
            continue
        keys = [fg.Key("change", "#555555"), fg.Key("confidence interval", "#555555", kind="line"),
                fg.Key("threshold (worse side)", "#555555", "|", kind="hollow")]
        section.blocks.append(Block(
            title, table,
            (lambda marks=marks, title=title, xlabel=xlabel, kind=kind, keys=keys:  # type: ignore[misc]
             fg.row_chart(marks, title=title, xlabel=xlabel, vlines=[0], keys=keys, percent=kind == "speed"))
            if marks else None,
            ("Marker: the change (current − baseline); line: its confidence interval; tick: the threshold on the "
            "worse side. Tinted rows regressed (vermillion) or improved (green). Drawn: AL and AR of every judged "
            "case and any figure that regressed or improved; the table holds every figure.") if marks else "",
            headline=kind == "acceptance"))
    return section
