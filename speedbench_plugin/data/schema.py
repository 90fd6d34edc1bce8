"""SPEED-Bench's record (``nvidia/SPEED-Bench``) and its validation.

Rows are validated as they are read so a bad file fails with its name and row number, never later
inside an engine run.
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

QUALITATIVE_CATEGORIES: tuple[str, ...] = (
    "coding", "math", "humanities", "stem", "writing", "summarization",
    "roleplay", "rag", "multilingual", "reasoning", "qa",
)
THROUGHPUT_TIERS: tuple[str, ...] = ("low_entropy", "mixed", "high_entropy")
# Seeded random-token prompts of the same lengths: the control that shows how much random inputs
# overstate SD throughput (they are not in the published dataset).
RANDOM_TIER = "random"
KNOWN_CATEGORIES: frozenset[str] = frozenset(QUALITATIVE_CATEGORIES + THROUGHPUT_TIERS + (RANDOM_TIER,))
# What SPEED-Bench uses; a file with another value (or none: most categories have none) is still valid.
DIFFICULTIES: frozenset[str] = frozenset({"easy", "medium", "hard"})

# The published dataset carries this turn where a source may not be redistributed.
PLACEHOLDER = "FULL BENCHMARK DATA SHOULD BE FETCHED FROM THE SOURCE USING SPECDEC_BENCH"
FIELDS: tuple[str, ...] = (
    "question_id", "category", "sub_category", "turns", "source", "src_id", "difficulty", "multiturn",
)
REQUIRED: tuple[str, ...] = ("question_id", "category", "turns")


class DataError(ValueError):
    """A data file or row that cannot be used; the message names the file and the row."""


class PlaceholderRowsError(DataError):
    """The file still carries SPEED-Bench's placeholder turns (sources not yet fetched)."""


@dataclass(frozen=True)
class Question:
    question_id: str
    category: str
    sub_category: str | None
    turns: tuple[str, ...]
    source: str | None
    src_id: str | None
    difficulty: str | None
    multiturn: bool

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["turns"] = list(self.turns)
        return row

    @property
    def text(self) -> str:
        """All turns, as embedded for diversity selection."""
        return "\n\n".join(self.turns)


def _optional_text(value: Any) -> str | None:
    """A field the suite only records: anything goes, and empty means absent.

    SPEED-Bench leaves ``difficulty`` empty outside some categories, exports write null, NaN or ``''``
    for a missing value, and some sources carry integer ids: none of that makes a row invalid.
    """
    if value is None or _is_nan(value):
        return None
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # numpy scalars from pandas
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # an integer column with nulls comes back from pandas as floats
    if not isinstance(value, str):
        value = json.dumps(value.tolist() if hasattr(value, "tolist") else value, default=str, ensure_ascii=False)
    return value.strip() or None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _question_id(value: Any, where: str) -> str:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field 'question_id' must be a non-empty string or an integer, got {value!r}")
    return value


def _turns(value: Any, where: str) -> tuple[str, ...]:
    if hasattr(value, "tolist"):  # numpy arrays from pandas
        value = value.tolist()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: field 'turns' must be a list of strings, got {type(value).__name__}")
    if not value:
        raise DataError(f"{where}: field 'turns' is empty")
    for i, turn in enumerate(value):
        if not isinstance(turn, str):
            raise DataError(f"{where}: turns[{i}] must be a string, got {type(turn).__name__}")
        if not turn.strip():
            raise DataError(f"{where}: turns[{i}] is empty")
    return tuple(value)


_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


def _multiturn(value: Any, turns: tuple[str, ...]) -> bool:
    """The recorded flag; derived from the turns when it is absent or not a recognisable boolean."""
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()
    if isinstance(value, (bool, int, float)) and not _is_nan(value):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return len(turns) > 1


def question_from_row(row: Mapping[str, Any], where: str, allowed: Iterable[str] = KNOWN_CATEGORIES) -> Question:
    """Validate one row; ``where`` names it in errors (e.g. ``data.jsonl row 12``).

    Strict on what the suite runs (``question_id``, ``category``, ``turns``), liberal on what it only
    records (``sub_category``, ``source``, ``src_id``, ``difficulty``, ``multiturn``); other columns
    are ignored.
    """
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected an object, got {type(row).__name__}")
    missing = [name for name in REQUIRED if name not in row or row[name] is None or _is_nan(row[name])]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    question_id = _question_id(row["question_id"], where)
    category = row["category"]
    allowed = frozenset(allowed)
    if category not in allowed:
        raise DataError(f"{where}: unknown category {category!r} (expected one of {', '.join(sorted(allowed))})")
    turns = _turns(row["turns"], where)
    return Question(
        question_id=question_id,
        category=str(category),
        sub_category=_optional_text(row.get("sub_category")),
        turns=turns,
        source=_optional_text(row.get("source")),
        src_id=_optional_text(row.get("src_id")),
        difficulty=_optional_text(row.get("difficulty")),
        multiturn=_multiturn(row.get("multiturn"), turns),
    )


def validate_questions(rows: Iterable[tuple[str, Mapping[str, Any]]], name: str) -> list[Question]:
    """Validate ``(where, row)`` pairs from one file: duplicates and placeholders fail the file.

    Placeholder rows are counted over the whole file first, so the user gets one actionable error
    rather than one per row.
    """
    questions: list[Question] = []
    seen: dict[str, str] = {}
    placeholders: list[str] = []  # where each placeholder row is, with its id
    for where, row in rows:
        question = question_from_row(row, where)
        if question.question_id in seen:
            raise DataError(
                f"{where}: duplicate question_id {question.question_id!r} (first at {seen[question.question_id]})"
            )
        seen[question.question_id] = where
        if any(PLACEHOLDER in turn for turn in question.turns):
            placeholders.append(f"{where} (question_id {question.question_id!r})")
        questions.append(question)
    if placeholders:
        raise PlaceholderRowsError(
            f"{name}: {len(placeholders)} of {len(questions)} rows still carry SPEED-Bench's placeholder "
            f"turn ('{PLACEHOLDER[:40]}...') instead of the question text: {'; '.join(placeholders[:3])}"
            f"{'; ...' if len(placeholders) > 3 else ''}. Resolve them with NVIDIA's "
            "specdec_bench: `python examples/specdec_bench/prepare_data.py` in the Model-Optimizer repo writes "
            "data/speed/<config>/test.parquet; pass that file instead. Or use the suite's offline split "
            "(`make data`, then no --speedbench-dataset)."
        )
    if not questions:
        raise DataError(f"{name}: no rows")
    return questions
