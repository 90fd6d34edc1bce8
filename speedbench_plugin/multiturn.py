"""Identical inputs for multi-turn conversations on every engine (``--speedbench-multiturn``).

A conversation's second turn is templated after its first answer. In ``own`` mode (the default)
that answer is the engine's own, so two engines (or two drafters that change the greedy output, or
a near-tie in bf16 logits) see different later-turn prompts and their figures are not measured on
the same inputs. In ``reference`` mode the suite replays fixed assistant answers, recorded once by a
named engine and model (``python -m speedbench_plugin multiturn record``): the suite templates and
tokenizes every turn itself, so every engine gets the same token ids on every turn (each request row
carries its prompt's sha256 to prove it).

A reference is one JSON file, ``<cache>/multiturn/<name>.json``, written atomically; its sha256 is
kept in the folder's checksum list (:func:`speedbench_plugin.cache.record_files`) and checked on
every load, and each case's record names the reference and its sha256. A reference belongs to one
question split (the sha256 of the split's rows, which for the offline split is the sha256 its
checksum list holds for ``test.jsonl``): replaying it on another split is refused.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from speedbench_plugin.cache import (
    CacheIntegrityError,
    atomic_write_json,
    cache_dir,
    record_files,
    sha256_once,
    sha256_text,
    verify_files,
)

if TYPE_CHECKING:
    from speedbench_plugin.data import Question
    from speedbench_plugin.record import Record

MODES = ("own", "reference")
KIND = "speedbench-multiturn-reference"
FORMAT = 1
RECORD_COMMAND = "python -m speedbench_plugin multiturn record"
OFFLINE_SPLIT = "offline qualitative split"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ReferenceUnusable(ValueError):
    """A reference that cannot be used; the message names the file or option and the fix."""


@dataclass(frozen=True)
class Replay:
    """The fixed assistant answers one conversation replays between its user turns, and where they
    come from (carried by :class:`speedbench_plugin.runner.WorkItem`; the case's record names them)."""

    answers: tuple[str, ...]
    reference: str
    sha256: str


@dataclass(frozen=True)
class Recorder:
    """Who recorded a reference's answers: greedy, without a drafter."""

    engine: str
    engine_version: str
    model: str
    model_sha: str
    model_identity: str
    max_tokens: int
    temperature: float = 0.0
    drafter: str = "none"


@dataclass(frozen=True)
class ReferenceTurns:
    """Per question id, the assistant answers (text) for turns 1..n-1 of a conversation of n turns."""

    name: str
    path: Path
    sha256: str  # of the file, as its folder's checksum list holds it
    recorded_by: Recorder
    split_source: str
    split_sha256: str
    recorded_at: str
    answers: Mapping[str, tuple[str, ...]]

    def replay(self, question_id: str) -> Replay:
        return Replay(self.answers.get(question_id, ()), self.name, self.sha256)

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "format": FORMAT, "name": self.name, "recorded_at": self.recorded_at,
                "recorded_by": vars(self.recorded_by).copy(),
                "split": {"source": self.split_source, "sha256": self.split_sha256},
                "answers": {qid: list(answers) for qid, answers in self.answers.items()}}

    @classmethod
    def from_json(cls, data: Any, path: Path, sha256: str) -> ReferenceTurns:
        try:
            if data.get("kind") != KIND or data.get("format") != FORMAT:
                raise ValueError(f"not a {KIND} file of format {FORMAT}")
            answers = {str(qid): tuple(str(a) for a in turns) for qid, turns in data["answers"].items()}
            return cls(str(data["name"]), path, sha256, Recorder(**data["recorded_by"]), str(data["split"]["source"]),
                       str(data["split"]["sha256"]), str(data["recorded_at"]), MappingProxyType(answers))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ReferenceUnusable(f"{path}: not a multi-turn reference ({type(exc).__name__}: {exc}); record it again "
                                 f"with `{RECORD_COMMAND}`") from None


# --- where references live -----------------------------------------------------------------------


def reference_dir() -> Path:
    return cache_dir() / "multiturn"


def default_name(model: str | None) -> str:
    """The reference a session uses unless told otherwise: the one named after its model."""
    from speedbench_plugin.models import EMBEDDED_NAME

    name = Path(model).name if model else EMBEDDED_NAME
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "reference"


def reference_path(name_or_path: str) -> Path:
    """A name (a file in :func:`reference_dir`) or the path of a reference file."""
    if _NAME.match(name_or_path) and not name_or_path.endswith(".json"):
        return reference_dir() / f"{name_or_path}.json"
    return Path(name_or_path).expanduser()


def load_reference(name_or_path: str) -> ReferenceTurns:
    """Read a reference after checking its sha256 against its folder's checksum list."""
    path = reference_path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(path)
    rebuild = f"{RECORD_COMMAND} --name {path.stem}"
    try:
        verify_files(path.parent, [path.name], rebuild)
    except CacheIntegrityError as exc:
        raise ReferenceUnusable(f"multi-turn reference {exc}") from None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceUnusable(f"{path}: unreadable ({exc}); record it again with `{rebuild}`") from None
    return ReferenceTurns.from_json(data, path, sha256_once(path))


def save_reference(reference: ReferenceTurns) -> ReferenceTurns:
    """Write ``reference`` to its path atomically and record its sha256; returns it with that sha256."""
    atomic_write_json(reference.path, reference.to_json())
    record_files(reference.path.parent, [reference.path.name])
    return ReferenceTurns(reference.name, reference.path, sha256_once(reference.path), reference.recorded_by,
                          reference.split_source, reference.split_sha256, reference.recorded_at, reference.answers)


def split_sha256(questions: Sequence[Question]) -> str:
    """The split's identity: sha256 of its rows as the suite writes them (for the offline split, the
    sha256 of ``test.jsonl`` in its checksum list)."""
    from speedbench_plugin.data.io import questions_to_jsonl

    return sha256_text(questions_to_jsonl(questions))


# --- the session ---------------------------------------------------------------------------------


def session_reference(mode: str, name_or_path: str | None, model: str | None, dataset: str | None,
                      mode_option: str, reference_option: str) -> ReferenceTurns | None:
    """The reference a session replays (None in ``own`` mode); raises :class:`ReferenceUnusable`
    naming the option and the command that records one."""
    if mode != "reference":
        if name_or_path:
            raise ReferenceUnusable(f"--{reference_option} {name_or_path!r} is only used with --{mode_option} reference")
        return None
    given = name_or_path or default_name(model)
    try:
        reference = load_reference(given)
    except FileNotFoundError:
        path = reference_path(given)
        which = f"--{reference_option} {given!r}" if name_or_path else f"the default reference for the model, {given!r},"
        record = f"{RECORD_COMMAND} --name {path.stem}" + (f" --model {model}" if model else "")
        raise ReferenceUnusable(
            f"--{mode_option} reference: {which} is not recorded ({path} is missing); record it with `{record}` "
            f"(the embedded model: `make multiturn-reference`), or name another with --{reference_option} "
            "NAME_OR_PATH") from None
    from speedbench_plugin.data import load_questions

    try:
        current = split_sha256(load_questions(dataset))
    except Exception as exc:  # noqa: BLE001 - the loader's message names the file, row or fix
        raise ReferenceUnusable(f"--{mode_option} reference: cannot read the question split to check the reference "
                             f"against: {exc}") from None
    if current != reference.split_sha256:
        raise ReferenceUnusable(
            f"--{mode_option} reference: {reference.path} was recorded for another question split "
            f"({reference.split_source}, sha256 {reference.split_sha256}); this session's split "
            f"({dataset or OFFLINE_SPLIT}) has sha256 {current}. Record a reference for it with "
            f"`{RECORD_COMMAND}{f' --dataset {dataset}' if dataset else ''}`")
    return reference


def check_covers(reference: ReferenceTurns, questions: Iterable[Question]) -> None:
    """Every multi-turn question the session runs has its answers in ``reference``."""
    missing = [q.question_id for q in questions if len(q.turns) > 1
               and len(reference.answers.get(q.question_id, ())) != len(q.turns) - 1]
    if missing:
        raise ReferenceUnusable(
            f"multi-turn reference {reference.name} ({reference.path}) has no answers for {len(missing)} of this "
            f"session's multi-turn questions ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); it was "
            f"recorded for fewer questions: record it for all of them with `{RECORD_COMMAND} --name {reference.name}`")


class _Conversation(Protocol):
    """What :func:`case_fields` reads of a work item (:class:`speedbench_plugin.runner.WorkItem`);
    a protocol, so that this module does not import the runner, which imports it."""

    @property
    def prompt_ids(self) -> object: ...

    @property
    def replay(self) -> Replay | None: ...


def case_fields(items: Sequence[_Conversation]) -> dict[str, Any]:
    """What a case's record says about its conversations: the mode, and the reference replayed.
    Nothing for cases of ready token ids (no conversation)."""
    conversations = [item for item in items if item.prompt_ids is None]
    if not conversations:
        return {}
    sources = {(item.replay.reference, item.replay.sha256) if item.replay else None for item in conversations}
    if len(sources) > 1:
        raise ValueError(f"one case mixes multi-turn sources: {sorted(map(str, sources))}")
    (source,) = sources
    if source is None:
        return {"multiturn": "own"}
    return {"multiturn": "reference", "multiturn_reference": source[0], "multiturn_reference_sha256": source[1]}


def table_note(records: Sequence[Record]) -> str | None:
    """The results table's line on which answers later turns were templated after."""
    modes = sorted({(r.case.multiturn, r.case.multiturn_reference, r.case.multiturn_reference_sha256)
                    for r in records if r.case.multiturn}, key=str)
    parts = [f"reference {name} (sha256 {str(sha)[:12]}): every engine got the same token ids on every turn"
             if mode == "reference" else "own (each engine's own answers: later-turn prompts differ across engines)"
             for mode, name, sha in modes]
    return f"multi-turn: {'; '.join(parts)}" if parts else None


# --- recording -----------------------------------------------------------------------------------


def _identity(model: str, served: Any) -> tuple[str, str]:
    from speedbench_plugin.identity import local_identity, served_identity

    local = local_identity(model)
    identity = served_identity(served, local) if isinstance(served, dict) else local
    return identity.sha, identity.method
