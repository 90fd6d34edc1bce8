"""Load a question set: the offline split, the published hub dataset, or a file in its schema."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from speedbench_plugin.cache import CacheIntegrityError, verify_files
from speedbench_plugin.data.io import SUFFIXES, offline_shortfall, qualitative_split_path, read_questions
from speedbench_plugin.data.schema import (
    QUALITATIVE_CATEGORIES,
    THROUGHPUT_TIERS,
    DataError,
    Question,
    validate_questions,
)

log = logging.getLogger(__name__)

HUB_DATASET = "nvidia/SPEED-Bench"
HUB_PREFIX = "speed:"
HUB_CONFIGS: tuple[str, ...] = (
    "qualitative", "throughput_1k", "throughput_2k", "throughput_8k", "throughput_16k", "throughput_32k",
)
MAKE_DATA_HINT = "run `make data` (or `python -m speedbench_plugin.data build-qualitative`)"


class DataUnavailable(RuntimeError):
    """The requested data is not built, not installed or not reachable; the message says what to run."""


def load_questions(
    spec: str | None,
    num_requests: int | None = None,
    categories: Iterable[str] | None = None,
) -> list[Question]:
    """``spec``: None (the offline qualitative split), ``speed:<config>`` (the hub), or a file path.

    ``categories`` keeps only those categories; ``num_requests`` then takes N questions in total,
    round-robin over the categories (see :func:`round_robin`).
    """
    if spec is None:
        questions = _load_offline_split()
    elif spec.startswith(HUB_PREFIX):
        questions = load_hub(spec[len(HUB_PREFIX):])
    else:
        path = Path(spec).expanduser()
        if path.suffix not in SUFFIXES:
            raise DataError(
                f"{spec}: expected speed:<config> ({', '.join(HUB_CONFIGS)}) or a .jsonl/.parquet file"
            )
        questions = read_questions(path)
    if categories is not None:
        questions = _keep_categories(questions, list(categories), spec or str(qualitative_split_path()))
    if num_requests is not None:
        questions = round_robin(questions, num_requests)
    return questions


def _load_offline_split() -> list[Question]:
    path = qualitative_split_path()
    if not path.exists():
        raise DataUnavailable(f"the offline qualitative split is not built ({path} is missing): {MAKE_DATA_HINT}")
    try:
        verify_files(path.parent, [path.name], _qualitative_rebuild_command())
    except CacheIntegrityError as exc:
        raise DataUnavailable(f"{exc} (or `make data`)") from exc
    return read_questions(path)


def _qualitative_rebuild_command() -> str:
    """The build command with the seed and size the split was built with (its manifest says)."""
    command = "python -m speedbench_plugin.data build-qualitative"
    try:
        manifest = json.loads((qualitative_split_path().parent / "manifest.json").read_text(encoding="utf-8"))
        return f"{command} --per-category {int(manifest['per_category_target'])} --seed {int(manifest['seed'])}"
    except (OSError, ValueError, KeyError, TypeError):  # no readable manifest: the defaults of `make data`
        return command


def _keep_categories(questions: list[Question], wanted: list[str], name: str) -> list[Question]:
    present = {q.category for q in questions}
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(f"{name}: no questions in categor{'y' if len(missing) == 1 else 'ies'} "
                        f"{', '.join(missing)} (present: {', '.join(sorted(present))})")
    keep = set(wanted)
    return [q for q in questions if q.category in keep]


def per_category(questions: Iterable[Question]) -> dict[str, list[Question]]:
    """Questions grouped by category, categories in SPEED-Bench's order, then any others sorted."""
    groups: dict[str, list[Question]] = {}
    for question in questions:
        groups.setdefault(question.category, []).append(question)
    order = [c for c in QUALITATIVE_CATEGORIES + THROUGHPUT_TIERS if c in groups]
    order += sorted(c for c in groups if c not in order)
    return {category: groups[category] for category in order}


def round_robin(questions: Sequence[Question], num_requests: int) -> list[Question]:
    """N questions in total: the first of every category, then the second of every category, ...

    Deterministic (file order within a category, SPEED-Bench's category order across them), so a
    small N still covers every category. N larger than the set gives the whole set, with a warning.
    """
    if num_requests < 1:
        raise DataError(f"num_requests must be at least 1, got {num_requests}")
    if num_requests > len(questions):
        log.warning("asked for %d requests but the set has %d; using all of them", num_requests, len(questions))
    groups = list(per_category(questions).values())
    picked: list[Question] = []
    depth = 0
    while len(picked) < min(num_requests, len(questions)):
        for group in groups:
            if depth < len(group) and len(picked) < num_requests:
                picked.append(group[depth])
        depth += 1
    return picked


def load_hub(config: str) -> list[Question]:
    """One config of ``nvidia/SPEED-Bench`` through ``datasets`` (imported only here)."""
    if config not in HUB_CONFIGS:
        raise DataError(f"speed:{config}: unknown config (expected one of {', '.join(HUB_CONFIGS)})")
    offline = (
        "The offline alternative: `make data` builds a split in the same design from installed corpora "
        "(use it by passing no --speedbench-dataset), or pass a local .jsonl/.parquet file in the schema "
        "(e.g. specdec_bench's data/speed/<config>/test.parquet)."
    )
    try:
        import datasets
    except ImportError as exc:
        raise DataUnavailable(
            f"speed:{config} needs the `datasets` package (pip install 'speedbench[hub]'). {offline}"
        ) from exc
    try:
        table = datasets.load_dataset(HUB_DATASET, config, split="test")
    except Exception as exc:  # network, auth and offline-mode errors all end here
        raise DataUnavailable(
            f"could not load {HUB_DATASET} config {config!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc)[:200]}). {offline}"
        ) from exc
    rows = ((f"{HUB_DATASET}[{config}] row {i + 1}", row) for i, row in enumerate(table))
    return validate_questions(rows, f"{HUB_DATASET}[{config}]")


def no_prompts_reason(category: str, dataset: str | None) -> str:
    """The skip reason for a category without prompts; for the offline split, why it has none."""
    reason = f"no prompts for category {category!r} in this dataset"
    if dataset is None:
        why = offline_shortfall(category)
        if why:
            reason += f" (the offline split has {why}; `python -m speedbench_plugin.data status`)"
    return reason
