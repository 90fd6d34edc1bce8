"""The offline qualitative builder end to end on the installed sources (slow: embeds ~5k texts cold)."""
from __future__ import annotations

import json
import shutil

import pytest

from speedbench_plugin.cache import INTEGRITY_FILE, cache_dir, verify_files
from speedbench_plugin.data import QUALITATIVE_CATEGORIES, load_questions, per_category
from speedbench_plugin.data.__main__ import main as cli
from speedbench_plugin.data.io import qualitative_split_path


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A new cache that reuses the real one's extracted corpora and embedding cache (read-only copies)."""
    real = cache_dir() / "data"
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    (tmp_path / "data").mkdir()
    if (real / "sources").exists():
        (tmp_path / "data" / "sources").symlink_to(real / "sources")
    if (real / "embedders").exists():  # the unpacked multilingual embedder (fetched with pip otherwise)
        (tmp_path / "data" / "embedders").symlink_to(real / "embedders")
    if (real / "embeddings").exists():
        shutil.copytree(real / "embeddings", tmp_path / "data" / "embeddings")
    return tmp_path


@pytest.mark.slow
@pytest.mark.qualitative
def test_build_qualitative_end_to_end(fresh_cache, capsys):
    from speedbench_plugin.data.sources import bigbench_available

    if not bigbench_available():
        pytest.fail("BIG-bench tasks not extracted (a setup step of `make data`): "
                    "run `python -m speedbench_plugin.data fetch-bigbench`")
    assert cli(["build-qualitative", "--per-category", "80", "--seed", "0", "--reselect"]) == 0
    manifest = json.loads((qualitative_split_path().parent / "manifest.json").read_text())
    assert manifest["selection"]["source"] == "embedded"
    questions = load_questions(None)
    groups = per_category(questions)
    assert list(groups) == list(QUALITATIVE_CATEGORIES)
    for category in QUALITATIVE_CATEGORIES:
        stats = manifest["categories"][category]
        assert stats["candidates"] > 80, category  # a real choice in every category
        assert stats["selected"] == len(groups[category]) == 80
        assert stats["avg_pairwise_cosine_selected"] < stats["avg_pairwise_cosine_random"], category
        assert stats["objective_final"] <= stats["objective_greedy"]
    assert manifest["all_categories_beat_random"] is True
    assert len(manifest["prompt_sha256"]) == len(questions) == 880
    assert 0.1 < manifest["multiturn_rows"] / 880 < 0.35  # SPEED-Bench: ~20% multi-turn
    assert {"mt_bench", "humaneval"} <= set(manifest["sources"])
    # Both files of the split carry the sha256 the build wrote, and the loader checked them above.
    recorded = json.loads((qualitative_split_path().parent / INTEGRITY_FILE).read_text())["files"]
    assert {name: entry["recorded"] for name, entry in recorded.items()} == {"test.jsonl": "written",
                                                                           "test.parquet": "written"}
    assert verify_files(qualitative_split_path().parent, ["test.jsonl", "test.parquet"], "") == []
    # The recorded selection rebuilds the same split, byte for byte, without embedding anything;
    # the parquet copy holds the same rows.
    first = qualitative_split_path().read_text()
    assert cli(["build-qualitative", "--seed", "0"]) == 0
    rebuilt = json.loads((qualitative_split_path().parent / "manifest.json").read_text())
    assert rebuilt["selection"]["source"] == "recorded"
    assert qualitative_split_path().read_text() == first
    assert rebuilt["prompt_sha256"] == manifest["prompt_sha256"]
    assert load_questions(str(qualitative_split_path().with_suffix(".parquet"))) == questions
    assert cli(["status"]) == 0
    assert "qualitative split: 880 rows" in capsys.readouterr().out
    small = load_questions(None, num_requests=22)
    assert [len(v) for v in per_category(small).values()] == [2] * 11
