"""The recorded qualitative selection: rebuilt from the corpora without embedding, every prompt
checked, and refused (with the command that re-selects) when it no longer fits."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from speedbench_plugin.cache import cache_dir
from speedbench_plugin.data import qualitative, recorded
from speedbench_plugin.data.io import qualitative_split_path
from speedbench_plugin.data.schema import DataError, Question


def _question(qid: str, text: str) -> Question:
    return Question(question_id=qid, category="coding", sub_category=None, turns=(text,), source=None, src_id=None,
                    difficulty=None, multiturn=False)


def _selection(entries: list[tuple[str, str]], **changes: object) -> recorded.RecordedSelection:
    fields: dict = {"seed": 0, "per_category": 80, "embedders": recorded.embedder_pins(), "corpus_sha256": "c",
                    "questions": {"coding": entries}, "rag_passages": {}, "categories": {}, "path": Path("sel.json")}
    return recorded.RecordedSelection(**(fields | changes))


def test_pick_returns_the_recorded_questions_in_order() -> None:
    a, b = _question("coding/x/1", "one"), _question("coding/x/2", "two")
    selection = _selection([("coding/x/2", recorded.prompt_sha256(b)), ("coding/x/1", recorded.prompt_sha256(a))])
    assert selection.pick({"coding": [a, b]}) == [b, a]


def test_a_changed_prompt_is_refused_naming_the_question_and_the_fix() -> None:
    selection = _selection([("coding/x/1", recorded.prompt_sha256(_question("coding/x/1", "old text")))])
    with pytest.raises(DataError, match=r"sel.json: question 'coding/x/1': prompt sha256 .* --reselect"):
        selection.pick({"coding": [_question("coding/x/1", "new text")]})


def test_a_missing_question_is_refused() -> None:
    selection = _selection([("coding/x/9", "0" * 64)])
    with pytest.raises(DataError, match=r"recorded question 'coding/x/9' is not among the 1 coding candidates"):
        selection.pick({"coding": [_question("coding/x/1", "text")]})


def test_other_settings_or_embedders_make_the_record_unusable() -> None:
    assert _selection([]).unusable_because(80, 0) is None
    assert "--per-category 80 --seed 0" in (_selection([]).unusable_because(40, 0) or "")
    changed = recorded.embedder_pins() | {"minilm_weights_sha256": "other"}
    assert _selection([], embedders=changed).unusable_because(80, 0) == "the pinned embedders changed since it was recorded"


def test_a_changed_corpus_runs_the_full_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded path notices other source files and hands over to the full selection."""
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    record = _selection([], corpus_sha256="not these corpora")
    monkeypatch.setattr(recorded, "load", lambda path=None: record)
    monkeypatch.setattr(qualitative, "build_pools", lambda log, embed, rag_passages=None: ({}, None))
    reasons: list[str] = []
    monkeypatch.setattr(qualitative, "_select_and_build", lambda per, seed, progress, why: reasons.append(why) or {})
    qualitative.build_qualitative(progress=False)
    assert reasons == ["the source corpora differ from those the recorded selection was made from"]


def test_reselect_skips_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorded, "load", lambda path=None: pytest.fail("the record was read"))
    reasons: list[str] = []
    monkeypatch.setattr(qualitative, "_select_and_build", lambda per, seed, progress, why: reasons.append(why) or {})
    qualitative.build_qualitative(progress=False, reselect=True)
    assert reasons == ["--reselect was given"]


def test_the_packaged_record_holds_ids_and_hashes_only() -> None:
    data = json.loads(recorded.packaged_path().read_text())
    rows = [row for rows in data["questions"].values() for row in rows]
    assert len(rows) == 880 and all(len(row) == 2 and len(row[1]) == 64 for row in rows)
    longest = max(len(value) for value in _strings(data))
    assert longest < 100  # no prompt text anywhere (the longest string is the note)


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.qualitative
@pytest.mark.bigbench
def test_rebuild_from_the_corpora_embeds_nothing_and_matches_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache with only the extracted corpora: the split comes back with every recorded id and hash."""
    real = cache_dir() / "data" / "sources"
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sources").symlink_to(real)
    monkeypatch.setattr("speedbench_plugin.data.embed.Embedder.embed", lambda *a, **k: pytest.fail("embedded"))
    started = time.perf_counter()
    manifest = qualitative.build_qualitative(progress=False)
    assert manifest["selection"]["source"] == "recorded"
    assert not (tmp_path / "data" / "embedders").exists() and not (tmp_path / "data" / "embeddings").exists()
    data = json.loads(recorded.packaged_path().read_text())
    expected = {qid: sha for rows in data["questions"].values() for qid, sha in rows}
    assert manifest["prompt_sha256"] == expected
    ids = [json.loads(line)["question_id"] for line in qualitative_split_path().read_text().splitlines()]
    assert ids == [qid for rows in data["questions"].values() for qid, _ in rows]
    print(f"rebuilt in {time.perf_counter() - started:.1f} s")
