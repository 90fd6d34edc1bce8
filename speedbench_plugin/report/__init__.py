"""Reports people would rather look at: one self-contained HTML file (inline SVG figures, a table
beside each) and a Markdown summary, from any number of results files laid side by side.

``python -m speedbench_plugin report RESULTS... [-o report.html] [--format html|md]``, or
``--speedbench-report PATH`` at the end of a run (:mod:`speedbench_plugin.report.plugin`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from speedbench_plugin.report.model import Report, ReportInputError, load_report

FORMATS = ("html", "md")

__all__ = ["FORMATS", "Report", "ReportInputError", "load_report", "render", "write_report"]


def render(report: Report, fmt: str = "html", html_name: str | None = None) -> str:
    """The report as HTML or Markdown text."""
    from speedbench_plugin.report.build import build_sections

    ctx, sections = build_sections(report)
    if fmt == "md":
        from speedbench_plugin.report.markdown import render_markdown

        return render_markdown(report, ctx, sections, html_name)
    if fmt != "html":
        raise ReportInputError(f"unknown report format {fmt!r}; use {' or '.join(FORMATS)}")
    from speedbench_plugin.report.html import render_html

    return render_html(report, ctx, sections)


def write_report(report: Report, target: Path, fmt: str | None = None, html_name: str | None = None) -> Path:
    """Write the report atomically; the format follows ``fmt`` or the file's suffix (.md: Markdown)."""
    from speedbench_plugin.cache import atomic_write_text

    chosen = fmt or ("md" if target.suffix.lower() in (".md", ".markdown") else "html")
    atomic_write_text(target, render(report, chosen, html_name))
    _readable(target)
    return target


def _readable(path: Path) -> None:
    """The atomic writer's temporary file is private (0600); a report is for sharing: the umask's mode."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def report_files(paths: Sequence[str | Path], target: Path, fmt: str | None = None,
                 labels: Sequence[str] | None = None) -> Path:
    return write_report(load_report(paths, labels), target, fmt)
