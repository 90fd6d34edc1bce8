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

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

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
    from speedbench_plugin.runner import WorkItem

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


def case_fields(items: Sequence[WorkItem]) -> dict[str, Any]:
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


def record_reference(*, engine: str, model: str | None, name: str | None, dataset: str | None,
                     num_requests: int | None, categories: Sequence[str] | None, max_tokens: int,
                     concurrency: int, engine_args: Mapping[str, Any], endpoint: str | None) -> ReferenceTurns:
    """Run the split's multi-turn questions once (greedy, drafter ``none``, each conversation up to
    its last user turn, with its own answers) through the suite's runner, and save the answers."""
    from speedbench_plugin.data import load_questions
    from speedbench_plugin.drafters import DrafterSpec
    from speedbench_plugin.engines import EngineConfig, create_engine
    from speedbench_plugin.engines.base import Sampling
    from speedbench_plugin.models import embedded_model
    from speedbench_plugin.prompts import ChatTokenizer
    from speedbench_plugin.runner import EngineHost, WorkItem, run_round

    questions = load_questions(dataset)
    chosen = load_questions(dataset, num_requests, categories) if num_requests or categories else questions
    multi = [q for q in chosen if len(q.turns) > 1]
    if not multi:
        raise ReferenceUnusable(f"{dataset or OFFLINE_SPLIT}: no multi-turn questions among the {len(chosen)} chosen")
    model = model or str(embedded_model())
    name = name or default_name(model)
    if not _NAME.match(name):
        raise ReferenceUnusable(f"--name {name!r}: use letters, digits, '.', '_', '+' and '-'")
    tokenizer = ChatTokenizer(model)
    tokenizer.tokenizer  # noqa: B018 - load it here: importing transformers first on the engine's thread can crash
    host = EngineHost(create_engine(engine, EngineConfig(model, DrafterSpec.parse("none"), dict(engine_args), endpoint)))
    try:
        host.start()
        items = [WorkItem(q.question_id, q.category, q.turns[:-1]) for q in multi]  # the last answer is not replayed
        measured = host.run(run_round(host.engine, tokenizer, items, Sampling(max_tokens, temperature=0.0), concurrency))
        described = host.engine.describe()
        recorder = Recorder(engine, host.engine.version, model, *_identity(model, described.get("served_model")),
                            max_tokens=max_tokens)
    finally:
        host.close()
    failed = [f"{r.question_id} turn {r.turn + 1}: {r.stream.error}" for r in measured.requests if r.stream.error]
    if failed:
        raise ReferenceUnusable(f"{len(failed)} request(s) failed, nothing was saved: {'; '.join(failed[:3])}")
    answers: dict[str, list[str]] = {}
    for request in measured.requests:  # sorted by (question, turn)
        answers.setdefault(request.question_id, []).append(tokenizer.decode(request.stream.output_ids))
    return save_reference(ReferenceTurns(
        name, reference_dir() / f"{name}.json", "", recorder, dataset or OFFLINE_SPLIT, split_sha256(questions),
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
        MappingProxyType({qid: tuple(texts) for qid, texts in answers.items()})))


def add_record_parser(sub: Any) -> None:
    """``multiturn record`` under ``python -m speedbench_plugin``."""
    multiturn = sub.add_parser("multiturn", help="fixed assistant turns for multi-turn questions (--speedbench-multiturn)")
    actions = multiturn.add_subparsers(dest="action", required=True)
    record = actions.add_parser(
        "record", help="record a reference once: the split's multi-turn questions, greedy, no drafter",
        description="Runs the question split's multi-turn conversations once (greedy, drafter none) and saves the "
                    "assistant answers as a reference that --speedbench-multiturn reference replays, so every engine "
                    "gets the same token ids on every turn. Written to <cache>/multiturn/NAME.json with its sha256.")
    record.add_argument("--engine", default="vllm", help="engine that answers (default vllm)")
    record.add_argument("--model", help="target model directory (default: the embedded SmolLM2-135M)")
    record.add_argument("--name", help="reference name (default: the model directory's name, what a session with "
                                       "that model uses by default)")
    record.add_argument("--dataset", help="speed:<config> or a .jsonl/.parquet file (default: the offline split)")
    record.add_argument("--num-requests", type=int, help="only the multi-turn questions among the first N of the "
                                                         "split, as --speedbench-num-requests picks them (default all)")
    record.add_argument("--categories", help="comma list of categories (default all)")
    record.add_argument("--max-tokens", type=int, default=128, help="tokens per answer (default 128)")
    record.add_argument("--concurrency", type=int, default=4, help="conversations in flight (default 4)")
    record.add_argument("--engine-args", action="append", default=[], help="KEY=VALUE for the engine, repeatable")
    record.add_argument("--endpoint", help="server URL (engine openai)")


def run_record(args: argparse.Namespace) -> int:
    from speedbench_plugin.options import key_values

    try:
        reference = record_reference(
            engine=args.engine, model=args.model, name=args.name, dataset=args.dataset, num_requests=args.num_requests,
            categories=[c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None,
            max_tokens=args.max_tokens, concurrency=args.concurrency, engine_args=key_values(args.engine_args, "engine-args"),
            endpoint=args.endpoint)
    except Exception as exc:  # noqa: BLE001 - one line naming what failed, not a traceback
        print(f"speedbench multiturn record: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    turns = sum(len(a) for a in reference.answers.values())
    print(f"speedbench multiturn record: {reference.path} ({len(reference.answers)} conversations, {turns} answers; "
          f"{reference.recorded_by.engine} {reference.recorded_by.engine_version}; sha256 {reference.sha256})")
    return 0
