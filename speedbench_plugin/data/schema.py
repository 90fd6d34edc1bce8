"""SPEED-Bench's record (``nvidia/SPEED-Bench``) and its validation.

Rows are validated as they are read so a bad file fails with its name and row number, never later
inside an engine run.
"""
from __future__ import annotations

import math
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


def _optional_str(value: Any, name: str, where: str) -> str | None:
    if value is None or _is_nan(value):
        return None
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)  # src_id is an int in some sources; the schema keeps strings
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{name}' must be a string or null, got {type(value).__name__}")
    return value


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _turns(value: Any, where: str) -> tuple[str, ...]:
    if hasattr(value, "tolist"):  # numpy arrays from parquet
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


def question_from_row(row: Mapping[str, Any], where: str, allowed: Iterable[str] = KNOWN_CATEGORIES) -> Question:
    """Validate one row; ``where`` names it in errors (e.g. ``data.jsonl row 12``)."""
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected an object, got {type(row).__name__}")
    missing = [name for name in REQUIRED if name not in row or row[name] is None]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    question_id = row["question_id"]
    if isinstance(question_id, int) and not isinstance(question_id, bool):
        question_id = str(question_id)
    if not isinstance(question_id, str) or not question_id:
        raise DataError(f"{where}: field 'question_id' must be a non-empty string")
    category = row["category"]
    allowed = frozenset(allowed)
    if category not in allowed:
        raise DataError(f"{where}: unknown category {category!r} (expected one of {', '.join(sorted(allowed))})")
    turns = _turns(row["turns"], where)
    difficulty = _optional_str(row.get("difficulty"), "difficulty", where)
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise DataError(f"{where}: difficulty {difficulty!r} is not one of easy, medium, hard")
    multiturn = row.get("multiturn")
    if multiturn is None or _is_nan(multiturn):
        multiturn = len(turns) > 1
    elif not isinstance(multiturn, bool) and type(multiturn).__name__ not in ("bool", "bool_"):  # numpy bools
        raise DataError(f"{where}: field 'multiturn' must be a boolean")
    return Question(
        question_id=question_id,
        category=category,
        sub_category=_optional_str(row.get("sub_category"), "sub_category", where),
        turns=turns,
        source=_optional_str(row.get("source"), "source", where),
        src_id=_optional_str(row.get("src_id"), "src_id", where),
        difficulty=difficulty,
        multiturn=bool(multiturn),
    )


def validate_questions(rows: Iterable[tuple[str, Mapping[str, Any]]], name: str) -> list[Question]:
    """Validate ``(where, row)`` pairs from one file: duplicates and placeholders fail the file.

    Placeholder rows are counted over the whole file first, so the user gets one actionable error
    rather than one per row.
    """
    questions: list[Question] = []
    seen: dict[str, str] = {}
    placeholders: list[str] = []
    for where, row in rows:
        question = question_from_row(row, where)
        if question.question_id in seen:
            raise DataError(
                f"{where}: duplicate question_id {question.question_id!r} (first at {seen[question.question_id]})"
            )
        seen[question.question_id] = where
        if any(PLACEHOLDER in turn for turn in question.turns):
            placeholders.append(question.question_id)
        questions.append(question)
    if placeholders:
        raise PlaceholderRowsError(
            f"{name}: {len(placeholders)} of {len(questions)} rows still carry SPEED-Bench's placeholder "
            f"turn ('{PLACEHOLDER[:40]}...'), e.g. {', '.join(placeholders[:3])}. Resolve them with NVIDIA's "
            "specdec_bench: `python examples/specdec_bench/prepare_data.py` in the Model-Optimizer repo writes "
            "data/speed/<config>/test.parquet; pass that file instead. Or use the suite's offline split "
            "(`make data`, then no --speedbench-dataset)."
        )
    if not questions:
        raise DataError(f"{name}: no rows")
    return questions
