"""SPEED-Bench Algorithm 1: pick the k candidates whose summed pairwise cosine similarity is lowest.

Greedy from a seeded random start, then local swap refinement. The objective counts ordered pairs,
``sum_{i != j in S} cos(x_i, x_j)``; everything is vectorised over the candidate similarity matrix.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SWAP_TOLERANCE = 1e-9  # a swap must lower the objective by more than float noise to count


@dataclass(frozen=True)
class Selection:
    indices: tuple[int, ...]  # into the candidate rows, in the order chosen
    objective: float  # after refinement
    greedy_objective: float  # before refinement
    swaps: int
    converged: bool  # False when the iteration cap stopped the swaps


def normalise(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit: np.ndarray = x / np.where(norms == 0, 1.0, norms)
    return unit


def objective(similarity: np.ndarray, indices: Sequence[int]) -> float:
    idx = np.asarray(indices, dtype=np.int64)
    block = similarity[np.ix_(idx, idx)]
    return float(block.sum() - np.trace(block))


def mean_pairwise_cosine(embeddings: np.ndarray) -> float:
    """Average cosine over distinct pairs; the manifest's diversity figure (lower = more diverse)."""
    x = normalise(embeddings)
    n = len(x)
    if n < 2:
        return float("nan")
    sim = x @ x.T
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1)))


def select_diverse(embeddings: np.ndarray, k: int, seed: int, max_swaps: int | None = None) -> Selection:
    """Algorithm 1. ``k >= n`` returns every candidate (nothing to choose)."""
    x = normalise(embeddings)
    n = len(x)
    if k <= 0 or n == 0:
        return Selection((), 0.0, 0.0, 0, True)
    if k >= n:
        everyone = tuple(range(n))
        value = objective(x @ x.T, everyone)
        return Selection(everyone, value, value, 0, True)
    sim = x @ x.T
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n))]
    in_set = np.zeros(n, dtype=bool)
    in_set[chosen[0]] = True
    # sums[j] = sum of similarities of candidate j to the current set (self included when j is in it)
    sums = sim[chosen[0]].copy()
    for _ in range(k - 1):
        masked = np.where(in_set, np.inf, sums)
        nxt = int(np.argmin(masked))  # argmin takes the lowest index on ties: deterministic
        chosen.append(nxt)
        in_set[nxt] = True
        sums += sim[nxt]
    greedy_value = objective(sim, chosen)
    swaps, converged = _refine(sim, chosen, in_set, sums, max_swaps if max_swaps is not None else 50 * k)
    return Selection(tuple(chosen), objective(sim, chosen), greedy_value, swaps, converged)


def _refine(sim: np.ndarray, chosen: list[int], in_set: np.ndarray, sums: np.ndarray, cap: int) -> tuple[int, bool]:
    """Best-improvement swaps in place. Swapping out a (in S) for b (not in S) changes the objective by
    2 * ((sums[b] - sim[a, b]) - (sums[a] - sim[a, a]))."""
    diag = np.diag(sim)
    for step in range(cap):
        members = np.asarray(chosen)
        outsiders = np.flatnonzero(~in_set)
        gain_out = sums[members] - diag[members]  # each member's similarity to the rest of S
        delta = 2.0 * ((sums[outsiders][None, :] - sim[np.ix_(members, outsiders)]) - gain_out[:, None])
        flat = int(np.argmin(delta))
        row, col = divmod(flat, delta.shape[1])
        if delta[row, col] >= -SWAP_TOLERANCE:
            return step, True
        a, b = int(members[row]), int(outsiders[col])
        chosen[row] = b
        in_set[a], in_set[b] = False, True
        sums += sim[b] - sim[a]
    return cap, False


def random_sample(n: int, k: int, seed: int) -> np.ndarray:
    """The seeded uniform baseline the manifest compares the selection with."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(k, n), replace=False))
