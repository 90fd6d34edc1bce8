"""What every section builder shares: the report, its palette, and how cases are named."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from speedbench_plugin.record import Record
from speedbench_plugin.report.model import Report, Run
from speedbench_plugin.report.palette import Palette


@dataclass(frozen=True)
class Context:
    report: Report
    palette: Palette

    @classmethod
    def of(cls, report: Report) -> Context:
        return cls(report, Palette.of(report.drafter_ids()))

    def run_title(self, title: str, run: Run) -> str:
        """A block's title, with the run's label when the report holds several runs."""
        return f"{title} — {run.label}" if self.report.multi else title

    def colour(self, record: Record) -> str:
        return self.palette.colour(record.case.drafter.id)

    def marker(self, record: Record) -> str:
        return self.palette.marker(record.case.drafter.id)


def sweeps_concurrency(records: Iterable[Record]) -> bool:
    return len({r.case.concurrency for r in records}) > 1


def case_name(record: Record, with_concurrency: bool = False) -> str:
    """``coding · ngram_k3`` (``· c4`` in a concurrency sweep, ``· dynamic`` for a dynamic-table run)."""
    parts = [record.case.label, record.case.drafter.id]
    if with_concurrency:
        parts.append(f"c{record.case.concurrency}")
    if record.case.dynamic_table is not None:
        parts.append("dynamic")
    return " · ".join(parts)


def ordered(records: Iterable[Record], palette: Palette) -> list[Record]:
    """Split, then label in the run's order, then drafter in the palette's order, then concurrency."""
    records = list(records)
    labels = list(dict.fromkeys(r.case.label for r in records))
    drafters = list(palette.colours)
    return sorted(records, key=lambda r: (r.case.split, labels.index(r.case.label),
                                          drafters.index(r.case.drafter.id) if r.case.drafter.id in drafters else 99,
                                          r.case.concurrency, r.case.dynamic_table is not None))


def labels_in_order(records: Sequence[Record]) -> list[str]:
    return list(dict.fromkeys(r.case.label for r in records))


def splits(records: Iterable[Record]) -> list[str]:
    return sorted({r.case.split for r in records})


def short_sha(sha: str | None) -> str:
    return sha[:12] if sha else "–"


def shown(items: Sequence[str], limit: int = 12) -> str:
    """A comma list, cut after ``limit`` items with how many more there are."""
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")
