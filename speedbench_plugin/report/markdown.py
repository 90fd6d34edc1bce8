"""The Markdown summary, sized for a GitHub job summary or a pull-request comment (GitHub refuses a
comment over 65,536 characters): the headline tables, cut to a few rows each, and the gate's
verdicts, which always name every regressed case and figure."""
from __future__ import annotations

from collections.abc import Sequence

from speedbench_plugin.report.common import Context
from speedbench_plugin.report.model import Report
from speedbench_plugin.report.sections_compare import gate_rows
from speedbench_plugin.report.tables import BAD, Section, Table

MAX_ROWS = 25
COMMENT_LIMIT = 60_000  # under GitHub's 65,536-character comment limit, with room for a workflow's own lines
FLAG_MARK = {BAD: "⚠ "}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table, max_rows: int = MAX_ROWS) -> str:
    header = "| " + " | ".join(_cell(c.name or " ") for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if c.numeric else "---" for c in table.columns) + "|"
    lines = [header, rule]
    for i in range(min(len(table), max_rows)):
        mark = FLAG_MARK.get(table.row_flags[i] or "", "")
        cells = [_cell(table.text(i, j)) for j in range(len(table.columns))]
        cells[0] = mark + cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    if len(table) > max_rows:
        lines.append(f"\n… {len(table) - max_rows} more rows in the HTML report.")
    return "\n".join(lines)


def gate_markdown(ctx: Context) -> list[str]:
    """Every regressed case with each regressed figure, as the gate describes it; then the rest."""
    items = gate_rows(ctx)
    if not items:
        return []
    from speedbench_plugin.compare import judge

    comparisons = [c for _, _, c in items]
    counts = {s: sum(1 for c in comparisons if c.get("status") == s) for s in judge.STATUS_ORDER}
    regressed = [c for c in comparisons if c.get("status") == judge.REGRESSED]
    verdict = "❌ **regressed**" if regressed else "✅ **no regression**"
    lines = ["### Regression gate", "",
             f"{verdict}: {len(comparisons)} cases, " + ", ".join(f"{n} {s}" for s, n in counts.items()), ""]
    for status in (judge.REGRESSED, judge.IMPROVED):
        for c in comparisons:
            if c.get("status") != status:
                continue
            other = c.get("baseline_case_id")
            lines.append(f"- **{status.upper()}** `{c['case_id']}`" + (f" (vs `{other}`)" if other and other != c["case_id"] else ""))
            lines += [f"  - {_cell(judge.describe_metric(m, c.get('confidence', 0.99)))}"
                      for m in c.get("metrics") or [] if m.get("status") == status]
    not_comparable = [c for c in comparisons if c.get("status") == judge.NOT_COMPARABLE]
    if not_comparable:
        lines += ["", f"<details><summary>{len(not_comparable)} not comparable</summary>", ""]
        for c in not_comparable[:MAX_ROWS]:
            reasons = judge.not_judged_reasons(c) + [n for n in c.get("notes") or [] if n not in judge.not_judged_reasons(c)]
            lines.append(f"- `{c['case_id']}`: {_cell('; '.join(reasons) or 'no reason recorded')}")
        if len(not_comparable) > MAX_ROWS:
            lines.append(f"- … and {len(not_comparable) - MAX_ROWS} more")
        lines += ["", "</details>"]
    quiet = [c["case_id"] for c in comparisons if c.get("status") in (judge.UNCHANGED, judge.IDENTICAL)]
    if quiet:
        lines += ["", f"unchanged or identical: {', '.join(f'`{q}`' for q in quiet[:40])}"
                  + (f" and {len(quiet) - 40} more" if len(quiet) > 40 else "")]
    return lines + [""]


def _section_markdown(section: Section) -> list[str]:
    lines: list[str] = []
    for block in section.blocks:
        if not block.headline or (block.table is None and not block.notes):
            continue
        lines += [f"#### {block.title}", ""]
        if block.table is not None and len(block.table):
            lines += [markdown_table(block.table), ""]
        lines += [f"> {note}" for note in block.notes] + ([""] if block.notes else [])
    return ([f"### {section.title}", ""] + lines) if lines else []


def render_markdown(report: Report, ctx: Context, sections: Sequence[Section], html_name: str | None = None) -> str:
    runs = "; ".join(f"**{run.label}**: {', '.join(run.engines)}, {len(run.records)} cases" for run in report.runs)
    head = ["## speedbench report", "", runs, ""]
    if html_name:
        head += [f"Full report with figures: `{html_name}`.", ""]
    gate = gate_markdown(ctx)
    body: list[str] = []
    for section in sections:
        if section.id == "gate":
            continue
        body += _section_markdown(section)
    text = "\n".join(head + gate + body)
    if len(text) > COMMENT_LIMIT:
        # The gate's verdicts come first and are never cut; the tables after them are.
        keep = "\n".join(head + gate)
        room = max(0, COMMENT_LIMIT - len(keep) - 200)
        cut = "\n".join(body)[:room].rsplit("\n", 1)[0]
        text = keep + "\n" + cut + "\n\n… cut to fit a pull-request comment; the HTML report has everything.\n"
    return text


def sections_markdown(sections: Sequence[Section]) -> list[str]:
    """The headline blocks of ``sections`` as Markdown lines (the history's summary)."""
    return [line for section in sections for line in _section_markdown(section)]
