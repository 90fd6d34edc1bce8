"""Pareto plots: output TPS (the server's view) against median user TPS (the user's view) across
concurrency, one PNG per (bucket, tier, drafter) with SD on and SD off on the same axes."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def pareto_plots(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``frame``: one row per case with bucket, tier, drafter_id, concurrency, output_tps,
    user_tps_median. Returns the written files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    needed = {"bucket", "tier", "drafter_id", "concurrency", "output_tps", "user_tps_median"}
    if frame.empty or not needed <= set(frame.columns):
        return written
    for (bucket, tier), cell in frame.groupby(["bucket", "tier"]):
        plain = cell[cell["drafter_id"] == "none"].sort_values("concurrency")
        for drafter, sd in cell[cell["drafter_id"] != "none"].groupby("drafter_id"):
            fig, ax = plt.subplots(figsize=(6, 4.5))
            for label, data, style in (("SD off (none)", plain, "o--"), (f"SD on ({drafter})", sd.sort_values("concurrency"), "s-")):
                if data.empty:
                    continue
                ax.plot(data["user_tps_median"], data["output_tps"], style, label=label)
                for _, row in data.iterrows():
                    ax.annotate(f"c{int(row['concurrency'])}", (row["user_tps_median"], row["output_tps"]),
                                textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel("median user TPS (tokens/s per request)")
            ax.set_ylabel("output TPS (tokens/s, all requests)")
            ax.set_title(f"bucket {bucket}, tier {tier}: {drafter} vs no SD")
            ax.grid(True, alpha=0.3)
            ax.legend()
            path = out_dir / f"pareto_{_safe(str(bucket))}_{_safe(str(tier))}_{_safe(str(drafter))}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written
