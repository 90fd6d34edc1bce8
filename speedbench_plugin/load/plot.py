"""Latency against request rate, SD on and off, one PNG per sweep (the SmartSpec paper's figure
shape): mean and p90 measured, SmartSpec's decode-only prediction, the measured crossover.
Okabe–Ito colours (colour-blind safe), and line styles and markers that differ without colour."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

BLUE, VERMILLION, GREY = "#0072B2", "#D55E00", "#555555"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def latency_plots(rows: pd.DataFrame, sweeps: pd.DataFrame, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    if rows.empty:
        return written
    crossover = {(s["group"], s["drafter_id"]): s for _, s in sweeps.iterrows()} if not sweeps.empty else {}
    for (group, drafter), data in rows.groupby(["group", "drafter_id"]):
        data = data[~data["rate"].map(math.isinf)].sort_values("rate")
        if data.empty:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for prefix, colour, marker, name in (("none", BLUE, "o", "SD off (none)"), ("sd", VERMILLION, "s", f"SD on ({drafter})")):
            ax.plot(data["rate"], data[f"{prefix}_mean_s"], "-", color=colour, marker=marker, label=f"{name}: mean")
            ax.plot(data["rate"], data[f"{prefix}_p90_s"], "--", color=colour, marker=marker, fillstyle="none",
                    label=f"{name}: p90")
            predicted = data[f"predicted_{prefix}_decode_s"]
            if predicted.notna().any():
                ax.plot(data["rate"], predicted, ":", color=colour, linewidth=1.2,
                        label=f"{name}: SmartSpec-predicted decode")
        sweep = crossover.get((group, drafter))
        if sweep is not None and sweep.get("crossover_mean_kind") == "between":
            ax.axvline(float(sweep["crossover_mean"]), color=GREY, linestyle="-.", linewidth=1,
                       label=f"crossover (mean) {float(sweep['crossover_mean']):.2g} req/s")
        ax.set_xlabel("request rate (requests/s)")
        ax.set_ylabel("request latency (s)")
        ax.set_title(f"{group}\n{drafter} vs no SD", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"load_latency_vs_rate_{_safe(group)}_{_safe(str(drafter))}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
