"""Pruned draft vocabularies: the kept set, the out-of-vocabulary share, the frequency cache, the
record section and the session-end table/CSV/figure (pure functions of records)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from recordkit import make_record

from speedbench_plugin import vocab as v
from speedbench_plugin.analyses import vocab_pruning as vp
from speedbench_plugin.record import Record, RequestRow


def test_kept_set_is_specials_plus_most_frequent_with_ties_by_id():
    counts = np.array([0, 0, 5, 9, 9, 1, 7])
    kept = v.kept_token_ids(counts, 4, vocab_size=8, always=[0])
    assert kept.tolist() == [0, 3, 4, 6]  # 9, 9 (ids 3 then 4), 7; id 0 pinned
    assert v.kept_token_ids(counts, 8, vocab_size=8).tolist() == list(range(8))  # all of it


@pytest.mark.parametrize(("n", "message"), [
    (0, "vocab=0: must be a positive integer"),
    (-3, "vocab=-3: must be a positive integer"),
    (9, "vocab=9 is larger than the vocabulary \\(8 tokens\\)"),
    (1, "vocab=1 is smaller than the 2 special tokens"),
])
def test_bad_n_is_named(n, message):
    with pytest.raises(v.VocabError, match=message):
        v.kept_token_ids(np.ones(8, dtype=np.int64), n, vocab_size=8, always=[0, 1])


def test_out_of_vocab_share_counts_ids_beyond_the_mask_as_outside():
    mask = np.array([True, False, True])
    share = v.out_of_vocab_share([[0, 1, 2], [2, 7]], mask)
    assert share == {"output_tokens": 5, "outside_tokens": 2, "outside_share": 0.4}
    assert v.out_of_vocab_share([], mask)["outside_share"] is None


def test_count_tokens():
    assert v.count_tokens([[1, 1, 3], [], [0]], 5).tolist() == [1, 2, 0, 1, 0]


def test_frequencies_are_cached_and_a_tampered_cache_is_refused(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    corpus = v.ReferenceCorpus("test-corpus", "ab" * 32, 2, "CC0", "made here")
    monkeypatch.setattr(v, "reference_corpus_texts", lambda: (corpus, ["def f(x): return x", "the the the"]))
    v.token_frequencies.cache_clear()
    first = v.token_frequencies(tiny_model_dir)
    assert first.tokens == int(first.counts.sum()) > 0
    assert Path(first.cache_file).parent == tmp_path / "vocab"
    v.token_frequencies.cache_clear()
    again = v.token_frequencies(tiny_model_dir)  # from the cache file this time
    assert again.cache_sha256 == first.cache_sha256 and (again.counts == first.counts).all()
    Path(first.cache_file).write_bytes(b"not the counts")
    v.token_frequencies.cache_clear()
    with pytest.raises(v.VocabError, match="does not match"):
        v.token_frequencies(tiny_model_dir)
    v.token_frequencies.cache_clear()


def test_tokenizer_fingerprint_needs_tokenizer_files(tmp_path):
    with pytest.raises(v.VocabError, match="no tokenizer files"):
        v.tokenizer_fingerprint(tmp_path)


def test_draft_vocabulary_on_the_real_corpus(tiny_model_dir):
    vocabulary = v.draft_vocabulary(tiny_model_dir, 4096)
    info = vocabulary.describe()
    assert len(vocabulary.kept) == 4096 == int(vocabulary.mask.sum())
    assert info["corpus"]["name"] in (v.CORPUS_DOCS, v.CORPUS_TOPICS)
    assert info["corpus"]["tokens"] > 100_000 and 0.5 < info["corpus_token_coverage"] < 1
    assert set(v.special_token_ids(tiny_model_dir)) <= set(vocabulary.kept.tolist())
    with pytest.raises(v.VocabError, match="larger than the vocabulary"):
        v.draft_vocabulary(tiny_model_dir, vocabulary.vocab_size + 1)


# --- the record section and its hook ---------------------------------------------------------

def test_record_section_for_a_pruned_drafter(tiny_model_dir):
    from speedbench_plugin.analyses.vocab_plugin import pytest_speedbench_update_record

    kept = v.draft_vocabulary(tiny_model_dir, 100)
    inside, outside = int(kept.kept[-1]), int(np.flatnonzero(~kept.mask)[0])
    stream = SimpleNamespace(output_ids=[inside, inside, outside, inside])
    rounds = [SimpleNamespace(streams=[stream]), SimpleNamespace(streams=[stream])]
    record = make_record(f"draft:k=3,model={tiny_model_dir},vocab=100", category="coding", model=tiny_model_dir)
    section = pytest_speedbench_update_record(config=None, record=record, rounds=rounds)["draft_vocabulary"]
    assert section["out_of_vocabulary"] == {"output_tokens": 8, "outside_tokens": 2, "outside_share": 0.25}
    assert section["vocab"] == 100 and section["kept_sha256"] == kept.kept_sha256
    full = make_record(f"draft:k=3,model={tiny_model_dir}", category="coding", model=tiny_model_dir)
    assert pytest_speedbench_update_record(config=None, record=full, rounds=rounds) is None


# --- the session-end analysis: pure functions of records --------------------------------------

def _record(category: str, n: int | None, al: float, share: float | None, target: str = "/m/t",
            drafter_model: str | None = None) -> Record:
    drafter = f"draft:k=3,model={drafter_model or target}" + (f",vocab={n}" if n else "")
    sections = {"draft_vocabulary": {"corpus": {"name": "python-docs-rst", "sha256": "c" * 64},
                                     "out_of_vocabulary": {"outside_share": share}}} if n else {}
    rows = tuple(RequestRow(f"q{i}", 0, 0, None, 10, 64) for i in range(3))
    return make_record(drafter, category=category, model=target, al=al, sections=sections, requests=rows, max_tokens=192)


RECORDS = [
    _record("coding", 4096, 3.8, 0.01), _record("coding", 32000, 4.0, 0.0), _record("coding", None, 4.0, None),
    _record("multilingual", 4096, 1.6, 0.55), _record("multilingual", 32000, 3.1, 0.2),
    _record("multilingual", None, 3.9, None),
    make_record("ngram:k=3", category="coding", model="/m/t", al=1.5),  # not a self-draft
    _record("coding", 4096, 2.0, 0.1, target="/m/t", drafter_model="/m/other"),
]


def test_self_draft_detection():
    assert vp.self_draft_vocab("draft:k=3,model=/m/t,vocab=8", "/m/t") == 8
    assert vp.self_draft_vocab("draft:k=3,model=/m/t", "/m/t") == vp.FULL
    assert vp.self_draft_vocab("draft:k=3,model=/m/x,vocab=8", "/m/t") is None
    assert vp.self_draft_vocab("ngram:k=3", "/m/t") is None


def test_frame_table_and_losses():
    frame = vp.pruning_frame(RECORDS)
    assert len(frame) == 6  # the n-gram and other-drafter records are left out
    coding_small = frame[(frame.category == "coding") & (frame.vocab == "4096")].iloc[0]
    assert coding_small.al_drop == pytest.approx(0.2) and coding_small.al_retained == pytest.approx(2.8 / 3.0)
    worst = vp.losses(frame)
    assert list(worst.index) == ["multilingual", "coding"]
    assert worst.loc["multilingual", "al_drop"] == pytest.approx(2.3)
    assert list(vp.al_matrix(frame).columns) == ["4096", "32000", "full"]
    table = vp.markdown_table(frame)
    assert "| multilingual | 3 | 1.60 | 3.10 | 3.90 | 55.0% | 20.0% |" in table
    assert table.index("multilingual") < table.index("| coding")


def test_outputs_are_written_atomically(tmp_path):
    paths = vp.write_outputs(RECORDS, tmp_path, "run")
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import pandas as pd

    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == list(vp.COLUMNS) and len(csv) == 6
    assert paths["table"].read_text().startswith("| category |")
    assert vp.write_outputs(RECORDS[6:7], tmp_path / "none", "run") == {}
    assert not (tmp_path / "none").exists()
