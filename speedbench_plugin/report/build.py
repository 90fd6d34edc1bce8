"""The report's sections, in reading order; a section appears only where its data exists."""
from __future__ import annotations

from collections.abc import Callable

from speedbench_plugin.report.common import Context
from speedbench_plugin.report.model import Report
from speedbench_plugin.report.notices import warnings_section
from speedbench_plugin.report.sections_case import acceptance, fidelity, fingerprint, positions, speed
from speedbench_plugin.report.sections_compare import gate, runs_compared
from speedbench_plugin.report.sections_throughput import load, other_sections, throughput
from speedbench_plugin.report.tables import Section

BUILDERS: tuple[Callable[[Context], Section | None], ...] = (
    fingerprint, gate, runs_compared, acceptance, positions, fidelity, speed, throughput, load, other_sections,
    warnings_section,
)


def build_sections(report: Report) -> tuple[Context, list[Section]]:
    ctx = Context.of(report)
    sections = [section for section in (builder(ctx) for builder in BUILDERS) if section is not None and section.blocks]
    return ctx, sections
