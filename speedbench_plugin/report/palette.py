"""One colour and one marker per drafter, the same in every figure and table of a report.

Colours are Okabe and Ito's palette for colour-blind readers (yellow last: it is faint on white);
``none`` (no speculative decoding) is dark grey. Every drafter also has its own marker, so figures
stay readable in black-and-white print and beyond seven drafters, where colours repeat.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
NONE_COLOUR = "#4D4D4D"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
RUN_LINESTYLES = ("-", "--", ":", "-.")
REGRESSED_TINT = "#D55E00"  # Okabe-Ito vermillion: the gate's regressed rows
IMPROVED_TINT = "#009E73"


@dataclass(frozen=True)
class Palette:
    colours: dict[str, str]
    markers: dict[str, str]

    @classmethod
    def of(cls, drafter_ids: Sequence[str]) -> Palette:
        colours: dict[str, str] = {}
        markers: dict[str, str] = {}
        enabled = [d for d in drafter_ids if d != "none"]
        if "none" in drafter_ids:
            colours["none"], markers["none"] = NONE_COLOUR, "o"
        for index, drafter in enumerate(enabled):
            colours[drafter] = OKABE_ITO[index % len(OKABE_ITO)]
            markers[drafter] = MARKERS[(index + 1) % len(MARKERS)]
        return cls(colours, markers)

    def colour(self, drafter_id: str) -> str:
        return self.colours.get(drafter_id, NONE_COLOUR)

    def marker(self, drafter_id: str) -> str:
        return self.markers.get(drafter_id, "o")


def run_linestyle(index: int) -> str:
    return RUN_LINESTYLES[index % len(RUN_LINESTYLES)]
