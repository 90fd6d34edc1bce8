"""The statistics of the regression gate, on plain arrays (no pytest, no records).

Acceptance (AL, AR, per-position rates) is a ratio of sums pooled over requests, compared over
the *same* requests: a paired bootstrap resamples requests, recomputes both runs' pooled ratios
on the same resample and gives the interval of their difference. Throughput and latency are
compared per round (rounds, not requests, are the independent unit: requests of one round share
the machine's state) with a one-sided Mann-Whitney U test and an effect-size floor.

Multiple testing: see ``holm_adjusted`` and docs/guides/regression-gate.md for how the family is formed.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


def seed_for(text: str) -> int:
    """A stable seed per case, so a rerun of the gate reports the same interval."""
    return zlib.crc32(text.encode("utf-8"))


# --- acceptance: paired bootstrap of pooled ratios -------------------------------------------


@dataclass(frozen=True)
class PairedRatio:
    """Per paired request: numerator and denominator of a pooled ratio, in both runs."""

    base_num: np.ndarray
    base_den: np.ndarray
    cur_num: np.ndarray
    cur_den: np.ndarray

    @classmethod
    def of(cls, base_num: Sequence[float], base_den: Sequence[float], cur_num: Sequence[float],
           cur_den: Sequence[float]) -> PairedRatio:
        arrays = [np.asarray(a, dtype=float) for a in (base_num, base_den, cur_num, cur_den)]
        if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
            raise ValueError("paired ratio: all four arrays must be 1-d and of one length")
        return cls(*arrays)

    @property
    def n(self) -> int:
        return int(self.base_num.shape[0])

    @property
    def baseline(self) -> float:
        return _ratio(self.base_num.sum(), self.base_den.sum())

    @property
    def current(self) -> float:
        return _ratio(self.cur_num.sum(), self.cur_den.sum())


@dataclass(frozen=True)
class Shift:
    """Current minus baseline, with a two-sided interval and one-sided p-values."""

    baseline: float
    current: float
    ci_low: float
    ci_high: float
    p_worse: float  # one-sided: evidence that the metric got worse
    p_better: float  # one-sided: evidence that it got better
    n: int

    @property
    def change(self) -> float:
        return self.current - self.baseline

    @property
    def rel_change(self) -> float:
        return _ratio(self.change, abs(self.baseline))

    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def _one_sided_from_bootstrap(change: float, se: float, higher_is_better: bool) -> tuple[float, float]:
    """Normal approximation with the bootstrap standard error.

    The empirical tail of B resamples cannot go below 1/(B+1), which a multiple-testing correction
    over many cases would always exceed; the studentized normal tail has no such floor.
    """
    if se > 0 and math.isfinite(se):
        z = change / se
        p_up, p_down = float(sps.norm.sf(z)), float(sps.norm.cdf(z))
    elif change > 0:
        p_up, p_down = 0.0, 1.0
    elif change < 0:
        p_up, p_down = 1.0, 0.0
    else:
        p_up = p_down = 1.0
    return (p_down, p_up) if higher_is_better else (p_up, p_down)


def paired_bootstrap(
    metrics: Mapping[str, PairedRatio],
    *,
    confidence: float = 0.99,
    resamples: int = 5000,
    seed: int = 0,
    higher_is_better: bool = True,
    chunk: int = 1000,
) -> dict[str, Shift]:
    """Resample paired requests (one resample shared by every metric) and compare pooled ratios."""
    if not metrics:
        return {}
    n = {m.n for m in metrics.values()}
    if len(n) != 1:
        raise ValueError("paired bootstrap: every metric must cover the same requests")
    size = n.pop()
    if size < 2:
        raise ValueError("paired bootstrap: needs at least two paired requests")
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    done = 0
    while done < resamples:
        batch = min(chunk, resamples - done)
        weights = rng.multinomial(size, np.full(size, 1.0 / size), size=batch).astype(float)
        for name, m in metrics.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                base = (weights @ m.base_num) / (weights @ m.base_den)
                cur = (weights @ m.cur_num) / (weights @ m.cur_den)
            diffs[name].append(cur - base)
        done += batch
    tail = (1.0 - confidence) / 2.0
    out: dict[str, Shift] = {}
    for name, m in metrics.items():
        d = np.concatenate(diffs[name])
        d = d[np.isfinite(d)]  # a resample without any drafting step has no rate
        change = m.current - m.baseline
        if d.size == 0 or not math.isfinite(change):
            out[name] = Shift(m.baseline, m.current, math.nan, math.nan, 1.0, 1.0, size)
            continue
        low, high = np.quantile(d, [tail, 1.0 - tail])
        p_worse, p_better = _one_sided_from_bootstrap(change, float(d.std(ddof=1)), higher_is_better)
        out[name] = Shift(m.baseline, m.current, float(low), float(high), p_worse, p_better, size)
    return out


# --- throughput and latency: rounds ---------------------------------------------------------


@dataclass(frozen=True)
class SpeedShift:
    """Median of per-round values, baseline against current, for one speed metric."""

    baseline: float  # median over baseline rounds
    current: float  # median over current rounds
    ci_low: float  # interval of the relative change of medians
    ci_high: float
    p_worse: float  # one-sided Mann-Whitney U
    p_better: float
    baseline_cv: float  # coefficient of variation of the baseline rounds
    n_baseline: int
    n_current: int

    @property
    def rel_change(self) -> float:
        return _ratio(self.current - self.baseline, abs(self.baseline))

    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def coefficient_of_variation(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=float)
    if arr.size < 2 or not arr.mean():
        return 0.0
    return float(arr.std(ddof=1) / abs(arr.mean()))


def _mannwhitney_less(x: np.ndarray, y: np.ndarray) -> float:
    """P-value of H1 "x tends to be smaller than y"; exact for small samples without ties."""
    ties = np.unique(np.concatenate([x, y])).size < x.size + y.size
    method = "exact" if not ties and x.size * y.size <= 400 else "asymptotic"
    return float(sps.mannwhitneyu(x, y, alternative="less", method=method).pvalue)


def smallest_mannwhitney_p(n_baseline: int, n_current: int) -> float:
    """The smallest one-sided exact p-value n vs m rounds can reach (complete separation)."""
    return 1.0 / math.comb(n_baseline + n_current, n_current)


def speed_shift(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    higher_is_better: bool,
    confidence: float = 0.99,
    resamples: int = 2000,
    seed: int = 0,
) -> SpeedShift:
    base = np.asarray([v for v in baseline if v is not None and math.isfinite(v)], dtype=float)
    cur = np.asarray([v for v in current if v is not None and math.isfinite(v)], dtype=float)
    if base.size < 2 or cur.size < 2:
        raise ValueError("speed shift: needs at least two rounds on each side")
    worse_is_less = higher_is_better
    p_less = _mannwhitney_less(cur, base)
    p_greater = _mannwhitney_less(base, cur)
    p_worse, p_better = (p_less, p_greater) if worse_is_less else (p_greater, p_less)
    rng = np.random.default_rng(seed)
    b = np.median(rng.choice(base, size=(resamples, base.size)), axis=1)
    c = np.median(rng.choice(cur, size=(resamples, cur.size)), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = c / b - 1.0
    rel = rel[np.isfinite(rel)]
    tail = (1.0 - confidence) / 2.0
    low, high = (np.quantile(rel, [tail, 1.0 - tail]) if rel.size else (math.nan, math.nan))
    return SpeedShift(
        float(np.median(base)), float(np.median(cur)), float(low), float(high), p_worse, p_better,
        coefficient_of_variation(base.tolist()), int(base.size), int(cur.size),
    )


# --- multiple testing ----------------------------------------------------------------------


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (reject where adjusted <= alpha); input order kept."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def drop_threshold(baseline: float, absolute: float, relative: float) -> float:
    """The smallest change that counts: max(absolute, relative × |baseline|)."""
    return max(absolute, relative * abs(baseline)) if math.isfinite(baseline) else absolute


def speed_threshold(baseline_cv: float, relative: float, cv_factor: float) -> float:
    """The smallest relative change that counts: max(relative, cv_factor × baseline CV)."""
    return max(relative, cv_factor * baseline_cv)
