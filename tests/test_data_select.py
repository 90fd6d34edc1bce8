"""Algorithm 1 on synthetic embeddings: monotone swaps, better than random, deterministic."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from speedbench_plugin.data.select import (
    mean_pairwise_cosine,
    normalise,
    objective,
    random_sample,
    select_diverse,
)


def clustered(n: int = 400, dim: int = 32, clusters: int = 6, seed: int = 0) -> np.ndarray:
    """Uneven clusters: a random sample over-represents the big ones, a diverse one should not."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 3
    weights = np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05])[:clusters]
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    return centres[labels] + rng.normal(size=(n, dim))


def test_swaps_never_raise_the_objective():
    x = clustered()
    sim = normalise(x) @ normalise(x).T
    values = [select_diverse(x, 30, seed=1, max_swaps=cap).objective for cap in range(12)]
    assert values[0] == pytest.approx(select_diverse(x, 30, seed=1).greedy_objective)
    assert all(later <= earlier + 1e-9 for earlier, later in itertools.pairwise(values))
    final = select_diverse(x, 30, seed=1)
    assert final.objective <= final.greedy_objective
    assert final.objective == pytest.approx(objective(sim, final.indices))


def test_converged_selection_is_a_local_optimum():
    x = clustered(n=60, dim=8, seed=3)
    sim = normalise(x) @ normalise(x).T
    result = select_diverse(x, 10, seed=0)
    assert result.converged
    chosen = list(result.indices)
    outside = [i for i in range(len(x)) if i not in chosen]
    for pos in range(len(chosen)):
        for b in outside:
            trial = chosen.copy()
            trial[pos] = b
            assert objective(sim, trial) >= result.objective - 1e-9


def test_selection_beats_random_samples():
    x = clustered(seed=5)
    result = select_diverse(x, 40, seed=0)
    selected = mean_pairwise_cosine(x[list(result.indices)])
    randoms = [mean_pairwise_cosine(x[random_sample(len(x), 40, seed)]) for seed in range(20)]
    assert selected < min(randoms)


def test_same_seed_same_result_and_valid_indices():
    x = clustered(seed=7)
    a, b = select_diverse(x, 25, seed=11), select_diverse(x, 25, seed=11)
    assert a == b
    assert len(set(a.indices)) == 25 and all(0 <= i < len(x) for i in a.indices)
    starts = {select_diverse(x, 25, seed=s, max_swaps=0).indices[0] for s in range(8)}
    assert len(starts) > 1  # the seed really picks the greedy start


def test_small_pools_and_edge_cases():
    x = clustered(n=5, dim=4)
    assert select_diverse(x, 10, seed=0).indices == (0, 1, 2, 3, 4)
    assert select_diverse(x, 0, seed=0).indices == ()
    assert np.isnan(mean_pairwise_cosine(x[:1]))
    same = np.ones((4, 3))
    assert mean_pairwise_cosine(same) == pytest.approx(1.0)
    assert list(random_sample(10, 4, 3)) == list(random_sample(10, 4, 3))
