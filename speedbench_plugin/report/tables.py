"""The report's building blocks, shared by the HTML and the Markdown writers: tables of raw values
with a format per column, blocks (a figure with the table of its numbers), sections."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MISSING = "–"


def fmt(value: Any, kind: str = "text") -> str:
    """One value as text. Kinds: text, prose (long text), int, f1, f2, f3, pct (a share), dpct (a signed relative change),
    d2, d3 (signed), x (a ratio), ms (seconds shown in ms), s (seconds), list2 (numbers)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if kind == "list2":
        return " ".join(fmt(v, "f2") for v in value) if value else MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)) or kind in ("text", "prose"):
        return str(value)
    formats: dict[str, Callable[[float], str]] = {
        "int": lambda v: f"{v:,.0f}",
        "f1": lambda v: f"{v:,.1f}",
        "f2": lambda v: f"{v:.2f}",
        "f3": lambda v: f"{v:.3f}",
        "pct": lambda v: f"{100 * v:.1f}%",
        "dpct": lambda v: f"{100 * v:+.1f}%",
        "d2": lambda v: f"{v:+.2f}",
        "d3": lambda v: f"{v:+.3f}",
        "x": lambda v: f"{v:.2f}x",
        "ms": lambda v: f"{1e3 * v:.2f}",
        "s": lambda v: f"{v:.3f}",
    }
    return formats.get(kind, str)(float(value))


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"
    help: str = ""  # what the column holds, where it comes from (a tooltip in HTML)

    @property
    def numeric(self) -> bool:
        return self.kind not in ("text", "prose")


# Row and cell flags the writers style: a figure that needs a reader's eye.
BAD, WARN, GOOD, BEST = "bad", "warn", "good", "best"


@dataclass
class Table:
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    row_flags: list[str | None] = field(default_factory=list)
    cell_flags: list[dict[int, str]] = field(default_factory=list)

    def add(self, values: Sequence[Any], flag: str | None = None, cells: dict[int, str] | None = None) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"row of {len(values)} values for {len(self.columns)} columns")
        self.rows.append(list(values))
        self.row_flags.append(flag)
        self.cell_flags.append(dict(cells or {}))

    def text(self, row: int, column: int) -> str:
        return fmt(self.rows[row][column], self.columns[column].kind)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Block:
    """One figure and the plain table of its numbers (either may be absent)."""

    title: str
    table: Table | None = None
    figure: Callable[[], str] | None = None  # the SVG, drawn only by the HTML writer
    caption: str = ""  # what the figure shows and where its numbers come from
    notes: list[str] = field(default_factory=list)
    headline: bool = False  # part of the Markdown summary


@dataclass
class Section:
    id: str
    title: str
    intro: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    @property
    def figures(self) -> int:
        return sum(1 for b in self.blocks if b.figure is not None)
