"""Vocabulary pruning per category (SPEED-Bench: pruned drafter vocabularies, as in EAGLE3, barely
hurt coding and math but cut acceptance on the long tail).

The target drafts for itself (``draft:k=K,model=<target>``): with its full vocabulary every draft is
accepted (AL = K + 1 apart from the cut at the end of a request), so any loss under ``vocab=N`` is the
pruning alone. Inputs are the case records (``category``, ``drafter``, ``model``, AL, requests and the
``draft_vocabulary`` section that :mod:`speedbench_plugin.analyses.vocab_plugin` adds); outputs are a
table, a CSV and a category x N heatmap, all pure functions of those records.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from speedbench_plugin.record import Record

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import atomic_write_bytes, atomic_write_text
from speedbench_plugin.drafters import DrafterSpec, DrafterSpecError

FULL = "full"
COLUMNS = ("category", "vocab", "vocab_size", "acceptance_length", "al_full", "al_drop", "al_retained",
           "outside_share", "requests", "output_tokens", "drafter", "corpus", "corpus_sha256")


def self_draft_vocab(drafter: str, target: str) -> int | str | None:
    """``N`` for a self-draft with ``vocab=N``, ``"full"`` for one without, ``None`` for anything else."""
    try:
        spec = DrafterSpec.parse(drafter)
    except DrafterSpecError:
        return None
    if spec.method != "draft" or not spec.model or Path(spec.model).resolve() != Path(target).resolve():
        return None
    n = spec.option("vocab")
    return FULL if n is None else int(n)


def is_self_draft(drafter: Any, target: str) -> bool:
    return self_draft_vocab(str(drafter), target) is not None


def pruning_frame(records: Sequence[Record]) -> pd.DataFrame:
    """One row per (category, N) from the self-draft qualitative records; empty when there are none."""
    import pandas as pd

    rows = []
    for record in records:
        case = record.case
        n = self_draft_vocab(str(case.drafter), case.model)
        if n is None or case.category is None:
            continue
        section = record.section("draft_vocabulary") or {}
        oov = section.get("out_of_vocabulary") or {}
        corpus = section.get("corpus") or {}
        rows.append({
            "category": case.category,
            "vocab": str(n),
            "vocab_size": float("inf") if n == FULL else n,
            "acceptance_length": record.acceptance.acceptance_length,
            # Full vocabulary: nothing is outside by definition.
            "outside_share": 0.0 if n == FULL else oov.get("outside_share"),
            "requests": len(record.requests),
            "output_tokens": record.acceptance.output_tokens,
            "drafter": str(case.drafter),
            "corpus": corpus.get("name"),
            "corpus_sha256": corpus.get("sha256"),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    full = frame[frame["vocab"] == FULL].set_index("category")["acceptance_length"]
    frame["al_full"] = frame["category"].map(full)
    frame["al_drop"] = frame["al_full"] - frame["acceptance_length"]
    # Share of the speculation gain (AL - 1) that survives the pruning.
    frame["al_retained"] = (frame["acceptance_length"] - 1) / (frame["al_full"] - 1)
    frame = frame.sort_values(["category", "vocab_size"]).reset_index(drop=True)
    return frame[list(COLUMNS)]


def _vocab_order(frame: pd.DataFrame) -> list[str]:
    return list(frame.drop_duplicates("vocab").sort_values("vocab_size")["vocab"])


def al_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """category x N table of AL (columns ordered by N, full last); rows ordered by loss at the smallest N."""
    matrix = frame.pivot(index="category", columns="vocab", values="acceptance_length")[_vocab_order(frame)]
    return matrix.loc[losses(frame).index] if len(matrix) else matrix


def losses(frame: pd.DataFrame) -> pd.DataFrame:
    """AL drop per category at the smallest N, largest first: the categories that lose most."""
    smallest = _vocab_order(frame)[0] if len(frame) else None
    at = frame[frame["vocab"] == smallest].set_index("category")
    return at[["acceptance_length", "al_full", "al_drop", "al_retained", "outside_share"]].sort_values(
        "al_drop", ascending=False)


def markdown_table(frame: pd.DataFrame) -> str:
    """AL per category per N, then the out-of-vocabulary share, as Markdown."""
    if frame.empty:
        return "(no self-draft records: run the target as its own drafter with vocab=N)\n"
    order = _vocab_order(frame)
    al = al_matrix(frame)
    oov = frame.pivot(index="category", columns="vocab", values="outside_share")[order].loc[al.index]
    requests = frame.groupby("category")["requests"].max().loc[al.index]
    head = "| category | requests | " + " | ".join(f"AL @ {v}" for v in order) + " | " + " | ".join(
        f"outside @ {v}" for v in order if v != FULL) + " |"
    lines = [head, "|" + "---|" * (2 + len(order) + len([v for v in order if v != FULL]))]
    for category in al.index:
        cells = [_fmt(al.loc[category, v], "{:.2f}") for v in order]
        shares = [_fmt(oov.loc[category, v], "{:.1%}") for v in order if v != FULL]
        lines.append(f"| {category} | {int(requests.loc[category])} | " + " | ".join(cells + shares) + " |")
    corpus = frame["corpus"].dropna().unique()
    note = f"\nKept vocabulary: the N most frequent tokens of {', '.join(corpus) or 'the reference corpus'} " \
           f"under the target's tokenizer; 'outside' = share of the target's output tokens not in it.\n"
    return "\n".join(lines) + "\n" + note


def _fmt(value: Any, pattern: str) -> str:
    import pandas as pd

    return "-" if pd.isna(value) else pattern.format(value)


def heatmap_png(frame: pd.DataFrame, title: str = "AL with the target as its own drafter, by kept vocabulary") -> bytes:
    """Category x N heatmap of AL (cividis: readable with colour-vision deficiencies and in grey)."""
    import io

    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = al_matrix(frame)
    fig, ax = plt.subplots(figsize=(1.3 * len(matrix.columns) + 3, 0.45 * len(matrix) + 1.6))
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap="cividis", aspect="auto")
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns])
    ax.set_yticks(range(len(matrix.index)), list(matrix.index))
    ax.set_xlabel("kept draft vocabulary (tokens)")
    ax.set_title(title, fontsize=10)
    values = matrix.to_numpy(dtype=float)
    finite = values[~np.isnan(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for row in range(values.shape[0]):
        for col in range(values.shape[1]):
            value = values[row, col]
            if not np.isnan(value):  # NaN: no record for this cell
                # cividis runs dark blue -> yellow: dark text on the light half.
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if value > middle else "white")
    fig.colorbar(image, ax=ax, label="acceptance length")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(records: Sequence[Record], folder: str | Path, stem: str) -> dict[str, Path]:
    """CSV, Markdown table and PNG heatmap under ``folder``; nothing when no record qualifies."""
    frame = pruning_frame(records)
    if frame.empty:
        return {}
    folder = Path(folder)
    paths = {"csv": folder / f"{stem}.csv", "table": folder / f"{stem}.md", "figure": folder / f"{stem}.png"}
    atomic_write_text(paths["csv"], frame.to_csv(index=False))
    atomic_write_text(paths["table"], markdown_table(frame))
    atomic_write_bytes(paths["figure"], heatmap_png(frame))
    return paths


def run_case(sb_case: Any, sb_engine: Any, category: str, concurrency: int, questions: dict[str, list[Any]]) -> None:
    """The bench body: one category's prompts with a self-draft drafter (others are skipped)."""
    import pytest

    if not is_self_draft(sb_engine.drafter, sb_engine.model):
        pytest.skip(f"vocabulary pruning runs the target as its own drafter (draft:k=3,model=<target>[,vocab=N]); "
                    f"{sb_engine.drafter} is not")
    items = questions.get(category, [])
    if not items:
        pytest.skip(f"no prompts for category {category!r} in this dataset")
    sb_case.run(items, split="qualitative", labels={"category": category}, concurrency=concurrency)
