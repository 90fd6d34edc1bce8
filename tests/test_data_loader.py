"""The question loader on small files in SPEED-Bench's published schema, written here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from speedbench_plugin.data import (
    PLACEHOLDER,
    DataError,
    DataUnavailable,
    PlaceholderRowsError,
    load_questions,
    per_category,
    round_robin,
)
from speedbench_plugin.data.io import read_questions, write_questions


def row(qid: str, category: str = "coding", turns=("Write a function.",), **extra) -> dict:
    base = {"question_id": qid, "category": category, "sub_category": None, "turns": list(turns),
            "source": "https://example.org", "src_id": "1", "difficulty": None, "multiturn": len(turns) > 1}
    base.update(extra)
    return base


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(params=["jsonl", "parquet"])
def writer(request):
    return (lambda p, rows: write_jsonl(p.with_suffix(".jsonl"), rows)) if request.param == "jsonl" else (
        lambda p, rows: write_parquet(p.with_suffix(".parquet"), rows))


def test_reads_single_and_multi_turn_rows(tmp_path, writer):
    rows = [row("a"), row("b", "math", ["Solve x.", "Now explain.", "Shorter."], difficulty="hard"),
            row("c", "qa", multiturn=None)]
    questions = load_questions(str(writer(tmp_path / "set", rows)))
    assert [q.question_id for q in questions] == ["a", "b", "c"]
    assert questions[1].turns == ("Solve x.", "Now explain.", "Shorter.")
    assert questions[1].multiturn and not questions[0].multiturn
    assert questions[1].difficulty == "hard"
    assert questions[2].multiturn is False  # missing multiturn is derived from the turns


def test_jsonl_and_parquet_round_trip(tmp_path):
    questions = load_questions(str(write_jsonl(tmp_path / "in.jsonl", [row("a"), row("b", "rag", ["P", "Q"])])))
    write_questions(tmp_path / "out.parquet", questions)
    write_questions(tmp_path / "out.jsonl", questions)
    assert read_questions(tmp_path / "out.parquet") == questions
    assert read_questions(tmp_path / "out.jsonl") == questions


def test_integer_ids_from_mt_bench_style_files_become_strings(tmp_path):
    questions = load_questions(str(write_jsonl(tmp_path / "q.jsonl", [row(81, src_id=7)])))
    assert questions[0].question_id == "81" and questions[0].src_id == "7"


def test_placeholder_rows_give_one_error_that_counts_and_names_them(tmp_path, writer):
    rows = [row("a"), row("b", turns=[PLACEHOLDER]), row("c", turns=["ok", PLACEHOLDER]), row("d")]
    path = writer(tmp_path / "ph", rows)
    with pytest.raises(PlaceholderRowsError) as err:
        load_questions(str(path))
    message = str(err.value)
    assert "2 of 4 rows" in message
    assert f"{path} row 2 (question_id 'b')" in message and f"{path} row 3 (question_id 'c')" in message
    assert "prepare_data.py" in message and "make data" in message  # what to do, both ways


# ---- rows shaped like the published exports -------------------------------------------------------

def published_frame():
    """Rows as SPEED-Bench's parquet/JSONL exports hold them (written here, no dataset text): difficulty
    empty outside some categories, nulls and empty strings in recorded fields, turns as numpy arrays,
    integer src_ids in a column with nulls (pandas makes it float), an extra column and a named index."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "question_id": ["q-code-1", "q-math-2", "q-rag-3", "q-write-4"],
            "category": ["coding", "math", "rag", "writing"],
            "sub_category": ["python", "", None, "  "],
            "turns": [np.array(["Write a sort."]), np.array(["Solve x.", "Explain."]),
                      np.array(["Read this.", "Answer.", "Cite it."]), np.array(["A poem."])],
            "source": ["https://example.org/a", "", None, "https://example.org/d"],
            "src_id": [7, None, 12, None],
            "difficulty": ["", "hard", None, ""],
            "multiturn": [False, True, True, False],
            "export_version": ["1.0"] * 4,
        },
        index=pd.Index([10, 11, 12, 13], name="row"),
    )


EXPECTED = {
    # question_id: (sub_category, source, src_id, difficulty, turns, multiturn)
    "q-code-1": ("python", "https://example.org/a", "7", None, ("Write a sort.",), False),
    "q-math-2": (None, None, None, "hard", ("Solve x.", "Explain."), True),
    "q-rag-3": (None, None, "12", None, ("Read this.", "Answer.", "Cite it."), True),
    "q-write-4": (None, "https://example.org/d", None, None, ("A poem.",), False),
}


def _as_expected(questions):
    return {q.question_id: (q.sub_category, q.source, q.src_id, q.difficulty, q.turns, q.multiturn)
            for q in questions}


@pytest.mark.parametrize("export", ["parquet", "jsonl"])
def test_published_export_shapes_load(tmp_path, export):
    frame = published_frame()
    path = tmp_path / f"test.{export}"
    if export == "parquet":
        frame.to_parquet(path)  # pyarrow keeps the named index as an extra column
    else:
        frame.to_json(path, orient="records", lines=True)  # NaN -> null, arrays -> lists, 7 -> 7.0
    questions = load_questions(str(path))
    assert _as_expected(questions) == EXPECTED
    assert [q.category for q in questions] == ["coding", "math", "rag", "writing"]


def test_pandas_rows_with_numpy_values_validate():
    """Rows straight from pandas (numpy arrays, numpy bools and ints, NaN), as a hub or user loader gives."""
    from speedbench_plugin.data.schema import validate_questions

    records = published_frame().to_dict("records")
    questions = validate_questions(((f"frame row {i}", r) for i, r in enumerate(records, 1)), "frame")
    assert _as_expected(questions) == EXPECTED
    numbered = [{**r, "question_id": i} for i, r in enumerate(published_frame().to_dict("records"), 1)]
    import numpy as np

    numbered[0]["question_id"] = np.int64(41)
    assert [q.question_id for q in validate_questions(((f"r{i}", r) for i, r in enumerate(numbered)), "f")] == [
        "41", "2", "3", "4"]


def test_a_file_with_empty_difficulty_everywhere_loads(tmp_path, writer):
    """The shape that used to fail every case: SPEED-Bench fills difficulty for some categories only."""
    rows = [row(f"q{i}", category, difficulty="") for i, category in enumerate(["coding", "qa", "rag"])]
    questions = load_questions(str(writer(tmp_path / "nodiff", rows)))
    assert [q.difficulty for q in questions] == [None, None, None]


def test_recorded_fields_are_kept_as_given(tmp_path):
    """JSONL lets one column mix types (parquet does not), so this is the loosest input a file can hold."""
    rows = [row("a", difficulty="extreme", sub_category="x", src_id=3.0, multiturn="yes"),
            row("b", difficulty=" Easy ", multiturn=None), row("c", multiturn="maybe")]
    a, b, c = load_questions(str(write_jsonl(tmp_path / "kept.jsonl", rows)))
    assert (a.difficulty, a.sub_category, a.src_id, a.multiturn) == ("extreme", "x", "3", True)
    assert (b.difficulty, b.multiturn) == ("Easy", False)
    assert c.multiturn is False  # unreadable flag: derived from the turns


@pytest.mark.parametrize(
    "bad, expected",
    [
        ({"category": "coding", "turns": ["x"]}, "missing field(s) question_id"),
        ({"question_id": "x", "turns": ["x"]}, "missing field(s) category"),
        (row("x", turns=[]), "'turns' is empty"),
        (row("x", turns=["ok", "  "]), "turns[1] is empty"),
        (row("x", turns=["ok", 3]), "turns[1] must be a string"),
        ({**row("x"), "turns": "just a string"}, "must be a list of strings"),
        (row("x", category="poetry"), "unknown category 'poetry'"),
        (row("", "coding"), "'question_id' must be a non-empty string"),
        (row("  ", "coding"), "'question_id' must be a non-empty string"),
        (row("x", category=None), "missing field(s) category"),
        ({**row("x"), "turns": None}, "missing field(s) turns"),
    ],
)
def test_malformed_rows_name_file_and_row(tmp_path, bad, expected):
    path = write_jsonl(tmp_path / "bad.jsonl", [row("ok"), bad])
    with pytest.raises(DataError) as err:
        load_questions(str(path))
    assert f"{path} row 2" in str(err.value) and expected in str(err.value)


def test_malformed_parquet_row_names_row(tmp_path):
    path = write_parquet(tmp_path / "bad.parquet", [row("ok"), row("y", category="poetry")])
    with pytest.raises(DataError, match=r"bad\.parquet row 2: unknown category"):
        load_questions(str(path))


def test_duplicate_question_id_names_both_rows(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [row("a"), row("b"), row("a", "math")])
    with pytest.raises(DataError, match=r"row 3: duplicate question_id 'a' \(first at .*row 1\)"):
        load_questions(str(path))


def test_unreadable_files(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question_id": "a", \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl row 1: not valid JSON"):
        load_questions(str(broken))
    with pytest.raises(DataError, match="no such file"):
        load_questions(str(tmp_path / "missing.jsonl"))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"garbage\.parquet: cannot read as parquet"):
        load_questions(str(garbage))
    with pytest.raises(DataError, match="expected speed:<config>"):
        load_questions(str(tmp_path / "data.csv"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        load_questions(str(empty))


def test_round_robin_takes_n_in_total_across_categories(tmp_path):
    rows = [row(f"c{i}", "coding") for i in range(5)] + [row(f"m{i}", "math") for i in range(2)] + [
        row(f"q{i}", "qa") for i in range(3)]
    path = str(write_jsonl(tmp_path / "rr.jsonl", rows))
    picked = load_questions(path, num_requests=7)
    assert [q.question_id for q in picked] == ["c0", "m0", "q0", "c1", "m1", "q1", "c2"]
    assert load_questions(path, num_requests=7) == picked  # deterministic
    assert [q.question_id for q in load_questions(path, num_requests=4, categories=["qa", "coding"])] == [
        "c0", "q0", "c1", "q1"]
    assert len(load_questions(path, num_requests=99)) == 10
    with pytest.raises(DataError):
        round_robin(picked, 0)


def test_per_category_uses_speed_bench_order(tmp_path):
    rows = [row("q", "qa"), row("w", "writing"), row("c", "coding")]
    groups = per_category(load_questions(str(write_jsonl(tmp_path / "o.jsonl", rows))))
    assert list(groups) == ["coding", "writing", "qa"]


def test_unknown_category_filter_is_an_error(tmp_path):
    path = str(write_jsonl(tmp_path / "f.jsonl", [row("a")]))
    with pytest.raises(DataError, match="no questions in category math"):
        load_questions(path, categories=["math"])


def test_missing_offline_split_says_make_data(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    with pytest.raises(DataUnavailable, match="make data"):
        load_questions(None)


def test_hub_errors_name_the_offline_alternative(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DataUnavailable, match="make data"):
        load_questions("speed:qualitative")
    with pytest.raises(DataError, match="unknown config"):
        load_questions("speed:throughput_3k")


def test_hub_failure_is_reported_with_offline_alternative(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("datasets")

    def load_dataset(*args, **kwargs):
        raise ConnectionError("no route to hub")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DataUnavailable, match=r"(?s)ConnectionError.*offline alternative"):
        load_questions("speed:throughput_2k")


def test_hub_rows_are_validated(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda *a, **k: [row("a", "low_entropy"), row("b", "high_entropy", turns=[PLACEHOLDER])]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(PlaceholderRowsError, match=r"nvidia/SPEED-Bench\[throughput_1k\]: 1 of 2 rows"):
        load_questions("speed:throughput_1k")


def test_damaged_offline_split_names_the_file_and_the_command(tmp_path, monkeypatch):
    from speedbench_plugin.cache import atomic_write_json
    from speedbench_plugin.data.io import qualitative_split_path

    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path / "cache"))
    questions = load_questions(str(write_jsonl(tmp_path / "in.jsonl", [row("a"), row("b", "math")])))
    split = qualitative_split_path()
    write_questions(split, questions)  # what build-qualitative does, with its manifest's seed and size
    atomic_write_json(split.parent / "manifest.json", {"per_category_target": 40, "seed": 3})
    assert load_questions(None) == questions
    split.write_text(split.read_text().replace('"math"', '"qa"  '))  # same size, other content
    with pytest.raises(DataUnavailable) as err:
        load_questions(None)
    message = str(err.value)
    assert message.startswith(f"{split}: sha256 ")
    assert "`python -m speedbench_plugin.data build-qualitative --per-category 40 --seed 3`" in message
    assert message.endswith("(or `make data`)")
