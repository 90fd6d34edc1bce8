"""One self-contained HTML file: inline CSS and SVG, no script, nothing fetched (a Content Security
Policy forbids every load), so it opens from disk or as a CI artifact and prints cleanly."""
from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Sequence

from speedbench_plugin import __version__
from speedbench_plugin.report.common import Context
from speedbench_plugin.report.figures import scope_ids
from speedbench_plugin.report.model import Report
from speedbench_plugin.report.notices import notices
from speedbench_plugin.report.tables import BAD, Block, Section, Table

PAGE_WIDTH_PX = 1430  # the main column (1480 px less padding): a figure and its table side by side must fit
CHAR_PX = 7.2  # a table character at 12.5 px, roughly

CSS = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d1d9e0; --zebra:#f6f8fa; --bad:#fbe1d3; --warn:#fff3c4;
        --good:#d8f1e5; --accent:#0072B2; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #fff; }
header, main, footer { max-width: 1480px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; border-bottom: 1px solid var(--line); }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 8px; border-top: 2px solid var(--ink); }
h3 { font-size: 15px; margin: 22px 0 8px; }
.sub { color: var(--muted); margin: 0 0 10px; }
nav ul { list-style: none; padding: 0; margin: 10px 0 14px; display: flex; flex-wrap: wrap; gap: 6px 16px; }
nav a { color: var(--accent); text-decoration: none; } nav a:hover { text-decoration: underline; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 6px 0 14px; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 5px; vertical-align: -1px;
          border: 1px solid rgba(0,0,0,.25); }
.banner { margin: 10px 0 14px; padding: 8px 12px; border-left: 4px solid #D55E00; background: var(--bad); }
.intro { color: var(--muted); max-width: 110ch; margin: 4px 0; }
.pair { display: grid; grid-template-columns: minmax(0, auto) minmax(0, 1fr); gap: 18px; align-items: start; }
.pair.stack { grid-template-columns: minmax(0, 1fr); }
figure { margin: 0; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; max-width: 90ch; }
.tbl { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--zebra); font-weight: 600; position: sticky; top: 0; }
th[title] { text-decoration: underline dotted; cursor: help; }
td.num, th.num { text-align: right; white-space: nowrap; }
td { white-space: nowrap; } td.prose { white-space: normal; } td.prose { min-width: 26ch; max-width: 70ch; }
tbody tr:nth-child(even) { background: #fbfcfd; }
tbody tr.bad, tbody td.bad { background: var(--bad); } tbody tr.warn, tbody td.warn { background: var(--warn); }
tbody tr.good, tbody td.good { background: var(--good); } td.best { font-weight: 700; outline: 2px solid var(--accent); }
td.bad { font-weight: 600; }
ul.notes { color: var(--muted); font-size: 12.5px; margin: 6px 0; padding-left: 18px; max-width: 110ch; }
footer { color: var(--muted); font-size: 12px; padding: 24px; border-top: 1px solid var(--line); margin-top: 40px; }
@media (max-width: 1100px) { .pair { grid-template-columns: minmax(0, 1fr); } }
@media print { nav { display: none; } h2 { break-before: auto; } .block { break-inside: avoid; }
               th { position: static; } body { font-size: 11px; } }
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _attrs(classes: Sequence[str], title: str = "") -> str:
    out = f' class="{" ".join(classes)}"' if classes else ""
    return out + (f' title="{_e(title)}"' if title else "")


def render_table(table: Table) -> str:
    head = "".join(f"<th{_attrs(['num'] if c.numeric else [], c.help)}>{_e(c.name)}</th>" for c in table.columns)
    body = []
    for i, flag in enumerate(table.row_flags):
        cells = []
        for j, column in enumerate(table.columns):
            classes = (["num"] if column.numeric else ["prose"] if column.kind == "prose" else []) \
                + ([table.cell_flags[i][j]] if j in table.cell_flags[i] else [])
            cells.append(f"<td{_attrs(classes)}>{_e(table.text(i, j))}</td>")
        body.append(f"<tr{_attrs([flag] if flag else [])}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Figures:
    """Numbers the page's figures, so their SVG ids are unique."""

    def __init__(self) -> None:
        self.count = 0

    def draw(self, block: Block) -> str:
        if block.figure is None:
            return ""
        self.count += 1
        svg = scope_ids(block.figure(), f"f{self.count}")
        caption = f"<figcaption>{_e(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure data-figure="{_e(block.title)}">{svg}{caption}</figure>'


def _svg_width_px(svg: str) -> float:
    match = re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"', svg)
    return float(match.group(1)) * 96 / 72 if match else PAGE_WIDTH_PX


def _table_width_px(table: Table) -> float:
    """A guess from the longest text per column (prose wraps at about 40 characters)."""
    width = 0.0
    for j, column in enumerate(table.columns):
        longest = max([min(len(column.name), 14)] + [len(table.text(i, j)) for i in range(len(table))])
        width += CHAR_PX * (min(longest, 40) if column.kind == "prose" else longest) + 17
    return width


def _block(block: Block, figures: _Figures) -> str:
    parts = [f'<div class="block"><h3>{_e(block.title)}</h3>']
    figure = figures.draw(block)
    if block.caption and not figure:
        parts.append(f'<p class="intro">{_e(block.caption)}</p>')
    has_table = block.table is not None and len(block.table) > 0
    table = f'<div class="tbl">{render_table(block.table)}</div>' if block.table is not None and has_table else ""
    if figure or table:
        beside = bool(figure and block.table is not None and has_table
                      and _svg_width_px(figure) + _table_width_px(block.table) + 18 <= PAGE_WIDTH_PX)
        parts.append(f'<div class="pair{"" if beside else " stack"}">{figure}{table}</div>')
    if block.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in block.notes) + "</ul>")
    parts.append("</div>")
    return "".join(parts)


def _section(section: Section, figures: _Figures) -> str:
    intro = "".join(f'<p class="intro">{_e(p)}</p>' for p in section.intro)
    blocks = "".join(_block(b, figures) for b in section.blocks)
    return f'<section id="{_e(section.id)}" data-section="{_e(section.id)}"><h2>{_e(section.title)}</h2>{intro}{blocks}</section>'


def _legend(ctx: Context) -> str:
    items = "".join(f'<span><span class="swatch" style="background:{colour}"></span>{_e(drafter)}</span>'
                    for drafter, colour in ctx.palette.colours.items())
    return f'<div class="legend" aria-label="drafter colours"><strong>Drafters:</strong> {items}</div>'


def _banner(ctx: Context) -> str:
    bad = [n for n in notices(ctx) if n.severity == BAD]
    if not bad:
        return ""
    what = ", ".join(dict.fromkeys(n.what for n in bad))
    return f'<div class="banner" role="alert"><strong>Warnings:</strong> {_e(what)}. <a href="#warnings">See Warnings.</a></div>'


def render_html(report: Report, ctx: Context, sections: Sequence[Section]) -> str:
    runs = ", ".join(f"{run.label} ({', '.join(run.engines)})" for run in report.runs)
    nav = "".join(f'<li><a href="#{_e(s.id)}">{_e(s.title)}</a></li>' for s in sections)
    figures = _Figures()
    body = "".join(_section(s, figures) for s in sections)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    files = ", ".join(str(run.path) for run in report.runs)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>speedbench report: {_e(', '.join(r.label for r in report.runs))}</title><style>{CSS}</style></head><body>"
        f'<header><h1>speedbench report</h1><p class="sub">{_e(runs)}</p>{_banner(ctx)}{_legend(ctx)}'
        f"<nav><ul>{nav}</ul></nav></header><main>{body}</main>"
        f"<footer>speedbench {_e(__version__)}, report written {_e(stamp)} from {_e(files)}. Every figure is read from "
        "the runs' records; deltas between runs and the mean and range over categories are the report's own, "
        "and named so.</footer></body></html>\n"
    )


def render_page(title: str, subtitle: str, sections: Sequence[Section], footer: str) -> str:
    """A page of sections in the report's layout and style (the history's page)."""
    nav = "".join(f'<li><a href="#{_e(s.id)}">{_e(s.title)}</a></li>' for s in sections)
    figures = _Figures()
    body = "".join(_section(s, figures) for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{_e(title)}</h1><p class="sub">{_e(subtitle)}</p><nav><ul>{nav}</ul></nav></header>'
        f"<main>{body}</main><footer>{_e(footer)}</footer></body></html>\n"
    )
