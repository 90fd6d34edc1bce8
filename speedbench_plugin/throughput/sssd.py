"""SSSD's hardware-aware speculation length (arXiv 2411.05894): speculate until batch × draft tokens
reaches the knee where the forward pass stops being nearly free per extra token (memory- or
overhead-bound) and turns compute-bound; on an H100 that is ≈ 295 tokens, here it is measured.

The knee is found with a hinge regression, ``t ≈ t0 + slope · max(0, tokens − knee)``: flat until
the knee, linear after it; the knee minimises the squared error over the measured sizes.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Knee:
    tokens: float  # batched tokens where step time starts to grow
    flat_s: float  # step time below the knee
    slope_s_per_token: float  # growth after the knee
    r2: float

    def to_dict(self) -> dict[str, float]:
        return {"knee_tokens": self.tokens, "flat_s": self.flat_s, "slope_s_per_token": self.slope_s_per_token, "r2": self.r2}


def find_knee(batched_tokens: Sequence[float], step_s: Sequence[float]) -> Knee:
    """Fit flat-then-linear; candidate knees are the measured sizes but the largest (a knee at the
    smallest size means step time grows from the start). Raises when no hinge grows."""
    x = np.asarray(batched_tokens, dtype=float)
    y = np.asarray(step_s, dtype=float)
    if len(x) != len(y) or len(np.unique(x)) < 3:
        raise ValueError("the knee needs step times at three or more distinct batch sizes")
    best: tuple[float, float, float, float] | None = None
    for knee in np.unique(x)[:-1]:
        design = np.column_stack([np.ones_like(x), np.maximum(0.0, x - knee)])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        if coef[1] <= 0:  # a hinge that does not bend upwards is no knee
            continue
        sse = float(np.sum((y - design @ coef) ** 2))
        if best is None or sse < best[0] - 1e-15:
            best = (sse, float(knee), float(coef[0]), float(coef[1]))
    if best is None:
        raise ValueError(f"step time does not grow with batched tokens in these measurements (up to {x.max():.0f})")
    sse, knee, flat, slope = best
    total = float(np.sum((y - y.mean()) ** 2))
    return Knee(knee, flat, slope, 1.0 - sse / total if total > 0 else float("nan"))


def sssd_draft_length(knee_tokens: float, concurrency: int, max_k: int) -> int:
    """``k = knee // concurrency``, capped at ``max_k`` (0 = do not speculate)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency}")
    if max_k < 0:
        raise ValueError(f"max draft length must not be negative, got {max_k}")
    return int(min(max_k, max(0, int(knee_tokens) // concurrency)))


def sssd_table(knee_tokens: float, concurrencies: Iterable[int], max_k: int) -> dict[int, int]:
    return {c: sssd_draft_length(knee_tokens, c, max_k) for c in concurrencies}
