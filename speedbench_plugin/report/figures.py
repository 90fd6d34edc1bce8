"""The report's figures: matplotlib drawn to SVG text (sharp at any size, its words searchable),
without pyplot's global state. Each function takes the numbers to draw, already read from records,
and returns an ``<svg>`` element; :func:`scope_ids` makes several of them safe in one page."""
from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from speedbench_plugin.report.tables import fmt

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TEXT_COLOUR = "#222222"
GRID_COLOUR = "#d9d9d9"
BAND_COLOUR = "#c7c7c7"
MISSING_CELL = "#eeeeee"


def _style() -> Any:  # matplotlib types rcParams keys as literals
    return {
        "svg.fonttype": "none",  # text stays text: searchable, and drawn in the page's own font
        "svg.hashsalt": "speedbench-report",  # stable ids: the same input gives the same file
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.edgecolor": "#777777",
        "axes.labelcolor": TEXT_COLOUR,
        "text.color": TEXT_COLOUR,
        "xtick.color": TEXT_COLOUR,
        "ytick.color": TEXT_COLOUR,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def to_svg(fig: Figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(_style()):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def scope_ids(svg: str, prefix: str) -> str:
    """Prefix every id and reference to it: one page holds many figures, and matplotlib's clip
    paths in two of them may otherwise share an id."""
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if not ids:
        return svg

    def rename(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}{prefix}-{name}" if name in ids else match.group(0)

    svg = re.sub(r'(\bid=")([^"]+)', rename, svg)
    svg = re.sub(r'(url\(#)([^)]+)', rename, svg)
    return re.sub(r'(href="#)([^"]+)', rename, svg)


def _luminance(rgba: Sequence[float]) -> float:
    return 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]


def _draw(build: Any, width: float, height: float) -> str:
    import matplotlib

    with matplotlib.rc_context(_style()):
        fig = _figure(width, height)
        build(fig)
        return to_svg(fig)


# --- heatmap -----------------------------------------------------------------------------------


def heatmap(values: Sequence[Sequence[float | None]], rows: Sequence[str], columns: Sequence[str], *, title: str,
            label: str, kind: str = "f2", diverging: bool = False, row_colours: Sequence[str] | None = None) -> str:
    """A matrix with its value written in every cell; empty cells say "n/a". ``diverging``: a
    change, centred on zero (purple-orange, readable for colour-blind readers), else cividis."""
    import matplotlib
    import numpy as np

    data = np.array([[math.nan if v is None else float(v) for v in row] for row in values], dtype=float)
    finite = data[np.isfinite(data)]

    def build(fig: Figure) -> None:
        ax = fig.add_subplot()
        cmap = matplotlib.colormaps["PuOr" if diverging else "cividis"].with_extremes(bad=MISSING_CELL)
        if diverging:
            limit = float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0
            vmin, vmax = -limit, limit
        else:
            vmin = float(finite.min()) if finite.size else 0.0
            vmax = float(finite.max()) if finite.size else 1.0
            if vmax <= vmin:
                vmin, vmax = vmin - 0.5, vmax + 0.5
        image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                value = data[i, j]
                if math.isnan(value):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="#777777")
                    continue
                rgba = cmap((value - vmin) / (vmax - vmin))
                ax.text(j, i, fmt(value, kind), ha="center", va="center", fontsize=8,
                        color="white" if _luminance(rgba) < 0.5 else "black")
        ax.set_xticks(range(len(columns)), labels=list(columns), rotation=30, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(rows)), labels=list(rows))
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)
        if row_colours:
            from matplotlib.patches import Rectangle

            ax.tick_params(axis="y", pad=9)
            for i, colour in enumerate(row_colours):
                ax.add_patch(Rectangle((-0.5 - 0.06 * max(1, len(columns)) ** 0.5, i - 0.4), 0.05 * max(1, len(columns)) ** 0.5,
                                       0.8, color=colour, clip_on=False))
        fig.colorbar(image, ax=ax, label=label, shrink=0.9, aspect=25)
        ax.set_title(title, loc="left")

    width = min(13.0, 2.2 + 0.68 * len(columns) + 0.07 * max((len(r) for r in rows), default=0))
    return _draw(build, width, max(2.1, 1.3 + 0.42 * len(rows)))


# --- lines -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    colour: str
    marker: str = "o"
    linestyle: str = "-"
    alpha: float = 1.0
    annotations: Sequence[str] = ()  # one per point, written beside it


@dataclass(frozen=True)
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: Sequence[Series]
    log_x: bool = False
    hline: float | None = None  # a reference level (e.g. speedup 1)
    integer_x: bool = False


def _plot_series(ax: Axes, series: Series) -> None:
    points = [(x, y) for x, y in zip(series.xs, series.ys) if y is not None and not math.isnan(y)]
    if not points:
        return
    xs, ys = zip(*points)
    ax.plot(xs, ys, linestyle=series.linestyle, marker=series.marker, color=series.colour, alpha=series.alpha,
            label=series.label, markersize=5, linewidth=1.6, markeredgecolor="white", markeredgewidth=0.5)
    for x, y, text in zip(series.xs, series.ys, series.annotations):
        if y is not None and not math.isnan(y) and text:
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=TEXT_COLOUR)


def line_panels(panels: Sequence[Panel], *, width_per_panel: float = 4.6, height: float = 3.6) -> str:
    """Panels side by side, one legend below them (one entry per label)."""

    def build(fig: Figure) -> None:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, panel in zip(axes, panels):
            for series in panel.series:
                _plot_series(ax, series)
            if panel.hline is not None:
                ax.axhline(panel.hline, color="#555555", linestyle="--", linewidth=0.9)
            if panel.log_x:
                ax.set_xscale("log", base=2)
            if panel.integer_x or panel.log_x:
                ticks = sorted({x for s in panel.series for x in s.xs})
                ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
                ax.minorticks_off()
            ax.set_title(panel.title, loc="left")
            ax.set_xlabel(panel.xlabel)
            ax.set_ylabel(panel.ylabel)
            ax.grid(True, color=GRID_COLOUR, linewidth=0.6)
        handles: dict[str, Any] = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                       ncols=min(4, len(handles)), frameon=False, fontsize=8)

    labels = len({s.label for p in panels for s in p.series})
    return _draw(build, width_per_panel * len(panels), height + 0.22 * math.ceil(labels / 4))


# --- rows: bars, intervals, points ---------------------------------------------------------------


@dataclass(frozen=True)
class RowMark:
    """One row of a row chart: a bar or a marker at ``value``, an interval ``lo``..``hi``, small
    points (e.g. rounds), a shaded band (e.g. what a bound explains), extra hollow markers."""

    label: str
    colour: str
    value: float | None = None
    bar: bool = False
    marker: str = "o"
    lo: float | None = None
    hi: float | None = None
    points: Sequence[float | None] = ()
    band: tuple[float, float] | None = None
    extras: Sequence[tuple[float | None, str]] = ()  # (value, marker)
    highlight: str | None = None  # a background tint for a row that needs the eye


@dataclass(frozen=True)
class Key:
    """A legend entry of a row chart."""

    label: str
    colour: str
    marker: str = "o"
    kind: str = "marker"  # marker, bar, band, line


def row_chart(rows: Sequence[RowMark], *, title: str, xlabel: str, vlines: Sequence[float] = (),
              keys: Sequence[Key] = (), width: float = 6.4, percent: bool = False) -> str:
    def build(fig: Figure) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        ax = fig.add_subplot()
        n = len(rows)
        for index, row in enumerate(rows):
            y = n - 1 - index
            if row.highlight:
                ax.axhspan(y - 0.5, y + 0.5, color=row.highlight, alpha=0.14, linewidth=0)
            if row.band is not None:
                ax.fill_betweenx([y - 0.32, y + 0.32], row.band[0], row.band[1], color=BAND_COLOUR, alpha=0.7, linewidth=0)
            if row.bar and row.value is not None:
                ax.barh(y, row.value, height=0.6, color=row.colour, alpha=0.9)
            if row.lo is not None and row.hi is not None:
                ax.hlines(y, row.lo, row.hi, color=row.colour, linewidth=2.2)
                ax.plot([row.lo, row.hi], [y, y], linestyle="none", marker="|", markersize=9, color=row.colour)
            if not row.bar and row.value is not None:
                ax.plot(row.value, y, marker=row.marker, color=row.colour, markersize=7, markeredgecolor="#222222",
                        markeredgewidth=0.6, linestyle="none")
            dots = [p for p in row.points if p is not None]
            if dots:
                ax.plot(dots, [y] * len(dots), linestyle="none", marker="o", markersize=3.2, color="#111111", alpha=0.75)
            for value, marker in row.extras:
                if value is not None:
                    ax.plot(value, y, marker=marker, markersize=7, markerfacecolor="white", markeredgecolor="#222222",
                            markeredgewidth=1.3, linestyle="none")
        for x in vlines:
            ax.axvline(x, color="#555555", linestyle="--", linewidth=0.9)
        ax.set_yticks(range(n), labels=[r.label for r in reversed(rows)])
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        ax.grid(True, axis="x", color=GRID_COLOUR, linewidth=0.6)
        if percent:
            from matplotlib.ticker import PercentFormatter

            ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        handles: list[Any] = []
        for key in keys:
            if key.kind == "bar":
                handles.append(Patch(color=key.colour, label=key.label))
            elif key.kind == "band":
                handles.append(Patch(color=BAND_COLOUR, label=key.label))
            elif key.kind == "line":
                handles.append(Line2D([], [], color=key.colour, linewidth=2.2, marker="|", markersize=9, label=key.label))
            elif key.kind == "hollow":
                handles.append(Line2D([], [], color=key.colour, marker=key.marker, linestyle="none", markerfacecolor="white",
                                      label=key.label))
            else:
                handles.append(Line2D([], [], color=key.colour, marker=key.marker, linestyle="none", label=key.label))
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), frameon=False, fontsize=8)

    longest = max((len(r.label) for r in rows), default=10)
    return _draw(build, width + 0.055 * longest, 1.2 + 0.3 * len(rows) + (0.3 if keys else 0))


# --- stacked shares ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareRow:
    label: str
    counts: Sequence[int]
    colour: str  # the drafter's, a stripe left of the bar
    notes: Sequence[str] = field(default_factory=tuple)


def stacked_shares(rows: Sequence[ShareRow], bin_labels: Sequence[str], *, title: str, xlabel: str) -> str:
    """Each row's counts as shares of its total (one 100% bar), bins in a sequential palette."""
    import matplotlib
    import numpy as np

    def build(fig: Figure) -> None:
        from matplotlib.patches import Rectangle

        ax = fig.add_subplot()
        cmap = matplotlib.colormaps["cividis"]
        colours = [cmap(v) for v in np.linspace(0.05, 0.95, max(1, len(bin_labels)))]
        n = len(rows)
        for index, row in enumerate(rows):
            y = n - 1 - index
            total = sum(row.counts)
            left = 0.0
            for j, count in enumerate(row.counts):
                share = count / total if total else 0.0
                if share <= 0:
                    continue
                ax.barh(y, share, left=left, height=0.7, color=colours[j], label=bin_labels[j] if index == 0 else None)
                if share >= 0.07:
                    ax.text(left + share / 2, y, f"{100 * share:.0f}%", ha="center", va="center", fontsize=7,
                            color="white" if _luminance(colours[j]) < 0.5 else "black")
                left += share
            ax.add_patch(Rectangle((-0.03, y - 0.35), 0.018, 0.7, color=row.colour, clip_on=False))
        ax.set_yticks(range(n), labels=[r.label for r in reversed(rows)])
        ax.tick_params(axis="y", pad=16, length=0)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.6, n - 0.4)
        from matplotlib.ticker import PercentFormatter

        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        handles = [Rectangle((0, 0), 1, 1, color=colours[j], label=label) for j, label in enumerate(bin_labels)]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), frameon=False, fontsize=8)

    longest = max((len(r.label) for r in rows), default=10)
    return _draw(build, 6.2 + 0.055 * longest, 1.4 + 0.3 * len(rows))


# --- a figure across runs (the history) -----------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """One figure's values across runs: points, each with a band (``None``: none) and a mark (a
    shift that starts there, drawn as a vertical line with its words)."""

    title: str
    ylabel: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    bands: Sequence[tuple[float, float] | None]
    marks: Sequence[str | None]
    colour: str = "#0072B2"
    scale: float = 1.0  # multiply values by this for display (seconds shown as ms)


def history_panels(tracks: Sequence[Track], xlabels: Sequence[str], *, width_per_panel: float = 3.6,
                   height: float = 3.0) -> str:
    """Panels side by side, one figure across runs each: the values joined in run order, the gate's
    bands as error bars, a shift's start as a dashed vertical line in vermillion."""

    def build(fig: Figure) -> None:
        axes = fig.subplots(1, len(tracks), squeeze=False)[0]
        for ax, track in zip(axes, tracks):
            points = [(x, y * track.scale) for x, y in zip(track.xs, track.ys) if y is not None and not math.isnan(y)]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", color=track.colour, linewidth=1.6, markersize=5)
            for x, y, band in zip(track.xs, track.ys, track.bands):
                if band is not None and y is not None:
                    low, high = band[0] * track.scale, band[1] * track.scale
                    ax.vlines(x, low, high, color=BAND_COLOUR, linewidth=5, alpha=0.8, zorder=0)
            for x, mark in zip(track.xs, track.marks):
                if mark:
                    ax.axvline(x, color="#D55E00", linestyle="--", linewidth=1.2)
                    ax.annotate(mark.split(",")[0], (x, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -10),
                                textcoords="offset points", fontsize=7, color="#D55E00")
            ax.set_xticks(list(track.xs), labels=[xlabels[int(x)] for x in track.xs], rotation=30, ha="right")
            ax.set_title(track.title, loc="left")
            ax.set_ylabel(track.ylabel)
            ax.grid(True, color=GRID_COLOUR, linewidth=0.6)

    return _draw(build, width_per_panel * len(tracks), height)
