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


@pytest.fixture
def without_bigbench(tmp_path, monkeypatch):
    """A new cache with no BIG-bench tasks, as on a machine whose package indexes lack the sdist."""
    real = cache_dir() / "data"
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    (tmp_path / "data").mkdir()
    for reused in ("embedders", "embeddings"):
        if (real / reused).exists():
            shutil.copytree(real / reused, tmp_path / "data" / reused)
    return tmp_path


@pytest.mark.qualitative
def test_without_bigbench_the_split_builds_and_names_what_it_lacks(without_bigbench, capsys):
    """The build completes from the other sources; the empty and short categories say why, and the
    bench's skip reason repeats it."""
    from speedbench_plugin.data import no_prompts_reason

    assert cli(["build-qualitative", "--seed", "0"]) == 0
    assert "BIG-bench tasks are not extracted" in capsys.readouterr().err
    manifest = json.loads((qualitative_split_path().parent / "manifest.json").read_text())
    assert manifest["bigbench_extracted"] is False and manifest["selection"]["source"] == "embedded"
    groups = per_category(load_questions(None))
    assert "qa" not in groups and "multilingual" not in groups
    assert len(groups["coding"]) == 80 and manifest["categories"]["coding"]["candidates"] > 80
    for category in ("qa", "multilingual"):
        assert manifest["categories"][category]["selected"] == 0
        assert "BIG-bench is not extracted" in manifest["categories"][category]["why_short"]
        assert "BIG-bench is not extracted" in no_prompts_reason(category, None)
    assert no_prompts_reason("qa", "my.jsonl") == "no prompts for category 'qa' in this dataset"


def test_fetch_bigbench_optional_says_why_and_goes_on(without_bigbench, monkeypatch, capsys):
    """A package index without the sdist: --optional warns (naming --sdist) and exits 0; without it, 1."""
    from speedbench_plugin.data import sources

    def unreachable(folder):
        raise sources.SourceUnavailable(sources.bigbench_unreachable_message("pip found no bigbench==1.0.0"))

    monkeypatch.setattr(sources, "_download_bigbench", unreachable)
    assert cli(["fetch-bigbench", "--optional"]) == 0
    err = capsys.readouterr().err
    assert "warning: BIG-bench 1.0.0 is not on this machine's package indexes" in err and "--sdist PATH" in err
    assert cli(["fetch-bigbench"]) == 1
    assert "error: BIG-bench 1.0.0" in capsys.readouterr().err
    assert cli(["fetch-bigbench", "--optional", "--sdist", str(without_bigbench / "missing.tar.gz")]) == 1


@pytest.mark.slow
@pytest.mark.qualitative
@pytest.mark.bigbench
def test_build_qualitative_end_to_end(fresh_cache, capsys):
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
