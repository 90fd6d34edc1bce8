"""SmartSpec's goodput model (arXiv 2406.14066): fit the step time from measured steps, combine it
with measured acceptance, and predict the tokens per second of the whole batch for every draft
length and concurrency.

Step time model (linear, as SmartSpec's first variant)::

    T_step ≈ a · batched_tokens + b · context_tokens + c

``batched_tokens`` = tokens the target verifies in the step (per request ``1 + drafted``),
``context_tokens`` = KV-cache tokens the step attends over (per request prompt + tokens so far).
Goodput for ``concurrency`` requests each drafting ``k`` tokens::

    goodput(k, C) = C · AL(k) / T_step(C · (1 + k · drafting_share), C · context)

with ``AL(k) = 1 + Σ_{i<k} pp[i]`` from the measured per-position acceptance ``pp`` (``pp[i]``: the share of all decode steps
whose draft position ``i`` was accepted, so ``AL = 1 + Σ pp``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# SmartSpec multiplies k = 0's goodput by 1.1 so that no speculation wins near-ties.
NO_SPEC_TIE_BONUS = 1.1


class FitError(ValueError):
    pass


@dataclass(frozen=True)
class StepTimeModel:
    """``seconds ≈ per_batched_token · batched + per_context_token · context + fixed``."""

    per_batched_token: float
    per_context_token: float
    fixed: float
    r2: float
    samples: int

    def predict(self, batched_tokens: float | np.ndarray, context_tokens: float | np.ndarray) -> np.ndarray:
        return self.per_batched_token * np.asarray(batched_tokens) + self.per_context_token * np.asarray(context_tokens) + self.fixed

    def to_dict(self) -> dict[str, float]:
        return {
            "a_s_per_batched_token": self.per_batched_token,
            "b_s_per_context_token": self.per_context_token,
            "c_s_fixed": self.fixed,
            "r2": self.r2,
            "samples": self.samples,
        }


def fit_step_time(batched_tokens: Sequence[float], context_tokens: Sequence[float], step_s: Sequence[float]) -> StepTimeModel:
    """Least squares on ``[batched, context, 1]``; R² on the same samples."""
    x_batched = np.asarray(batched_tokens, dtype=float)
    x_context = np.asarray(context_tokens, dtype=float)
    y = np.asarray(step_s, dtype=float)
    if not (len(x_batched) == len(x_context) == len(y)):
        raise FitError("batched_tokens, context_tokens and step_s differ in length")
    keep = np.isfinite(x_batched) & np.isfinite(x_context) & np.isfinite(y)
    x_batched, x_context, y = x_batched[keep], x_context[keep], y[keep]
    if len(y) < 4:
        raise FitError(f"need at least 4 measured steps to fit the step-time model, got {len(y)}")
    design = np.column_stack([x_batched, x_context, np.ones_like(y)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else float("nan")
    return StepTimeModel(float(coef[0]), float(coef[1]), float(coef[2]), r2, len(y))


def expected_acceptance_length(per_position: Sequence[float], k: int) -> float:
    """``AL(k) = 1 + Σ_{i<k} pp[i]``; positions beyond the measured ones count as never accepted."""
    if k < 0:
        raise ValueError(f"draft length must not be negative, got {k}")
    return 1.0 + float(sum(per_position[:k]))


def predict_goodput(
    model: StepTimeModel,
    per_position: Sequence[float],
    draft_lengths: Iterable[int],
    concurrencies: Iterable[int],
    context_per_request: float,
    drafting_share: float = 1.0,
) -> pd.DataFrame:
    """Predicted goodput (tokens/s of the whole batch) for every (k, concurrency); k = 0 is no SD.

    ``drafting_share`` is the share of steps that propose drafts (ngram proposes nothing when its
    lookup misses; a draft model always drafts): a step verifies ``1 + k · drafting_share`` tokens
    per request on average.
    """
    rows = []
    for concurrency in concurrencies:
        if concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency}")
        for k in sorted({0, *draft_lengths}):
            share = drafting_share if k else 0.0
            batched = concurrency * (1.0 + k * share)
            context = concurrency * context_per_request
            step_s = float(model.predict(batched, context))
            al = expected_acceptance_length(per_position, k)
            goodput = concurrency * al / step_s if step_s > 0 else float("nan")
            rows.append({"concurrency": concurrency, "k": k, "acceptance_length": al, "batched_tokens": batched,
                         "context_tokens": context, "step_s": step_s, "goodput": goodput})
    return pd.DataFrame(rows)


def best_k(table: pd.DataFrame, value: str = "goodput", no_spec_bonus: float = 1.0) -> dict[int, int]:
    """Per concurrency, the k with the highest ``value``; ``no_spec_bonus`` scales k = 0 (SmartSpec: 1.1)."""
    scored = table.assign(_score=np.where(table["k"] == 0, table[value] * no_spec_bonus, table[value]))
    scored = scored.dropna(subset=["_score"])
    best = scored.loc[scored.groupby("concurrency")["_score"].idxmax()]
    return {int(c): int(k) for c, k in zip(best["concurrency"], best["k"])}
