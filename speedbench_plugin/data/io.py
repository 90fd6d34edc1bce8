"""Read and write question files (JSONL or parquet in SPEED-Bench's schema) and the data cache."""
from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import atomic_write_bytes, atomic_write_text, cache_dir, record_files
from speedbench_plugin.data.schema import FIELDS, DataError, Question, validate_questions

SUFFIXES = (".jsonl", ".parquet")


def data_dir() -> Path:
    """``<cache>/data``: built splits, manifests, embedding cache, extracted sources."""
    path = cache_dir() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    try:
        handle = path.open("rb")  # decoded line by line, so that a bad byte is named by its row
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path} row {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                                "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise DataError(f"{path}: cannot read as parquet ({exc})") from exc
    # pyarrow's to_pylist gives plain Python lists and None (pandas would give arrays and NaN).
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"{path} row {number}", row


def read_questions(path: str | os.PathLike[str]) -> list[Question]:
    file = Path(path)
    if not file.exists():
        raise DataError(f"{file}: no such file")
    if file.suffix == ".jsonl":
        rows = _jsonl_rows(file)
    elif file.suffix == ".parquet":
        rows = _parquet_rows(file)
    else:
        raise DataError(f"{file}: unsupported file type (expected {' or '.join(SUFFIXES)})")
    return validate_questions(rows, str(file))


def questions_to_jsonl(questions: Sequence[Question]) -> str:
    return "".join(json.dumps(q.to_row(), ensure_ascii=False) + "\n" for q in questions)


def questions_to_parquet(questions: Sequence[Question]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("question_id", pa.string()), ("category", pa.string()), ("sub_category", pa.string()),
        ("turns", pa.list_(pa.string())), ("source", pa.string()), ("src_id", pa.string()),
        ("difficulty", pa.string()), ("multiturn", pa.bool_()),
    ])
    table = pa.Table.from_pylist([q.to_row() for q in questions], schema=schema)
    assert tuple(table.column_names) == FIELDS
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def write_questions(path: str | os.PathLike[str], questions: Sequence[Question]) -> None:
    """Write atomically and record the file's sha256 in its folder's checksum list (see cache.py)."""
    file = Path(path)
    if file.suffix == ".jsonl":
        atomic_write_text(file, questions_to_jsonl(questions))
    elif file.suffix == ".parquet":
        atomic_write_bytes(file, questions_to_parquet(questions))
    else:
        raise DataError(f"{file}: unsupported file type (expected {' or '.join(SUFFIXES)})")
    record_files(file.parent, [file.name])


def qualitative_dir() -> Path:
    return data_dir() / "qualitative"


def qualitative_split_path() -> Path:
    """The offline qualitative split written by ``python -m speedbench_plugin.data build-qualitative``."""
    return qualitative_dir() / "test.jsonl"


def throughput_dir() -> Path:
    return data_dir() / "throughput"


def offline_shortfall(category: str) -> str | None:
    """Why the built offline split has fewer prompts for ``category`` than asked (its manifest's
    ``why_short``), or None when it is not short or no split is built."""
    manifest = qualitative_dir() / "manifest.json"
    if not manifest.exists():
        return None
    notes = json.loads(manifest.read_text()).get("categories", {}).get(category, {})
    why = notes.get("why_short")
    return str(why) if why else None
