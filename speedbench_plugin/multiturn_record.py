"""``python -m speedbench_plugin multiturn record``: run the split's multi-turn questions once through
the suite's runner and save the answers as a reference (:mod:`speedbench_plugin.multiturn`).

Kept apart from the reference format so that the runner, which replays references, does not sit in
an import cycle with the code that records them.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from speedbench_plugin.multiturn import (
    _NAME,
    OFFLINE_SPLIT,
    Recorder,
    ReferenceTurns,
    ReferenceUnusable,
    _identity,
    default_name,
    reference_dir,
    save_reference,
    split_sha256,
)


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
