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


def test_placeholder_rows_give_one_error_that_counts_them(tmp_path, writer):
    rows = [row("a"), row("b", turns=[PLACEHOLDER]), row("c", turns=["ok", PLACEHOLDER]), row("d")]
    with pytest.raises(PlaceholderRowsError) as err:
        load_questions(str(writer(tmp_path / "ph", rows)))
    message = str(err.value)
    assert "2 of 4 rows" in message and "prepare_data.py" in message and "ph." in message


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
        (row("x", difficulty="extreme"), "difficulty 'extreme'"),
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
