"""What a reader must not miss: partial runs, failed cases and requests, unexplained fidelity gaps,
merged streams, client-bound cases, missing counters, and what the report could not place."""
from __future__ import annotations

from dataclasses import dataclass

from speedbench_plugin.report.common import Context, shown
from speedbench_plugin.report.tables import BAD, WARN, Block, Column, Section, Table


@dataclass(frozen=True)
class Notice:
    run: str
    what: str
    cases: tuple[str, ...]
    detail: str
    severity: str  # BAD or WARN


def notices(ctx: Context) -> list[Notice]:
    out: list[Notice] = []

    def add(run: str, what: str, cases: list[str], detail: str, severity: str = WARN) -> None:
        if cases or what in ("partial run", "not placed"):
            out.append(Notice(run, what, tuple(cases), detail, severity))

    for run in ctx.report.runs:
        records = run.records
        if run.partial:
            add(run.label, "partial run", [], f"{run.path.name} says the run stopped before every case finished "
                "(\"partial\": true): cases may be missing.", BAD)
        add(run.label, "failed cases", [r.case_id for r in records if r.outcome == "failed"],
            "the test failed (errors, a regression, a fidelity gap under --speedbench-strict-fidelity): its figures "
            "are what was measured.", BAD)
        add(run.label, "failed before measuring", [nodeid for nodeid, _ in run.failed_without_record],
            "; ".join(f"{nodeid}: {error}" for nodeid, error in run.failed_without_record[:5])
            + (f" (+{len(run.failed_without_record) - 5} more)" if len(run.failed_without_record) > 5 else ""), BAD)
        errored = [r for r in records if r.errors]
        add(run.label, "request errors", [r.case_id for r in errored],
            "; ".join(f"{r.case_id}: {r.errors[0]}" + (f" (+{len(r.errors) - 1} more)" if len(r.errors) > 1 else "")
                      for r in errored[:5]), BAD)
        add(run.label, "fidelity gap", [r.case_id for r in records
                                        if any(c.verdict == "unexplained" for c in r.fidelity.values())],
            "stream and counters disagree beyond what end cuts and merged steps explain (see Fidelity).", BAD)
        add(run.label, "merged stream", [r.case_id for r in records
                                         if r.acceptance.stream_merged and r.acceptance.histogram_source == "stream"],
            "the stream merged engine steps and the engine gave no per-step record: AL, pp and CAR overstate "
            "acceptance.")
        add(run.label, "client-bound", [r.case_id for r in records if r.speed.client_bound],
            "the client set the pace: speed figures are the harness's, not the engine's.")
        add(run.label, "counters missing", [r.case_id for r in records if r.case.k and r.counters.note],
            "; ".join(sorted({r.counters.note or "" for r in records if r.case.k and r.counters.note})))
        if run.without_record:
            add(run.label, "not placed", list(run.without_record),
                f"{len(run.without_record)} benchmark entries of {run.path.name} hold no speedbench record.")
    for comparison in ctx.report.comparisons:
        unplaced = [r.case_id for r in comparison.only_reference + comparison.only_other]
        if unplaced:
            add(comparison.other.label, "not placed", unplaced,
                f"cases only in one of {comparison.reference.label} and {comparison.other.label}: no delta for them.")
        if not comparison.pairs:
            add(comparison.other.label, "not placed", [],
                f"{comparison.other.label} shares no case with {comparison.reference.label}.", BAD)
        for note in comparison.ambiguous:
            add(comparison.other.label, "not placed", [], note)
    return out


def warnings_section(ctx: Context) -> Section:
    items = notices(ctx)
    table = Table(([Column("run")] if ctx.report.multi else []) + [Column("what"), Column("cases", "int"),
                                                                    Column("which", "prose"), Column("detail", "prose")])
    for notice in items:
        table.add(([notice.run] if ctx.report.multi else []) + [notice.what, len(notice.cases), shown(list(notice.cases), 8),
                                                                 notice.detail], flag=notice.severity)
    blocks = [Block("Warnings", table, headline=True)] if items else [
        Block("Warnings", notes=[("None: no partial run, failed case, request error, fidelity gap, merged stream, "
                                 "client-bound case or unplaced case.")])]
    return Section("warnings", "Warnings", [], blocks)


def has_bad(ctx: Context) -> bool:
    return any(n.severity == BAD for n in notices(ctx))
