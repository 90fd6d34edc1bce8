"""Throughput split: exact-length prompts per input-length bucket and entropy tier, in the target's tokens.

Built per tokenizer (``<cache>/data/throughput/<tokenizer key>/``), because a bucket is a token
count of the target model after its chat template. One parquet file per bucket holds every tier.

Context rule: a bucket is built only when ``bucket + reserve_output <= context`` (``reserve_output``
defaults to 256 tokens of output); at load time a bucket is skipped, with a message, when
``bucket + max_tokens > context``. Neither is an error: a small model simply runs fewer buckets.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speedbench_plugin.cache import (
    CacheIntegrityError,
    atomic_write_bytes,
    atomic_write_json,
    file_lock,
    record_files,
    verify_files,
)
from speedbench_plugin.data.io import throughput_dir
from speedbench_plugin.data.schema import RANDOM_TIER, THROUGHPUT_TIERS, DataError

if TYPE_CHECKING:
    from speedbench_plugin.data.corpora import Corpora
    from speedbench_plugin.data.lengths import ChatFrame
    from speedbench_plugin.prompts import ChatTokenizer

log = logging.getLogger(__name__)

DEFAULT_BUCKETS: tuple[int, ...] = (1024, 2048, 8192, 16384, 32768)  # SPEED-Bench: 1k, 2k, 8k, 16k, 32k
ALL_TIERS: tuple[str, ...] = THROUGHPUT_TIERS + (RANDOM_TIER,)
DEFAULT_PER_CELL = 32  # SPEED-Bench has 512 per tier and bucket; a CPU run needs far fewer
DEFAULT_RESERVE_OUTPUT = 256
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "tokenizer.model",
                   "vocab.json", "merges.txt", "special_tokens_map.json")
BUILD_HINT = "run `make data` (or `python -m speedbench_plugin.data build-throughput --model {model}`)"


@dataclass(frozen=True)
class ThroughputPrompt:
    question_id: str
    bucket: int  # tokens, chat template included; len(prompt_ids) == bucket
    tier: str  # low_entropy | mixed | high_entropy | random
    prompt_ids: tuple[int, ...]
    source: str
    sub_task: str = ""


@dataclass(frozen=True)
class SkippedBucket:
    bucket: int
    reason: str


def tokenizer_key(model_path: str | Path) -> str:
    """sha256 over the tokenizer's files that decide token ids and the chat template (weights excluded)."""
    root = Path(model_path)
    digest = hashlib.sha256()
    found = False
    for name in TOKENIZER_FILES:
        path = root / name
        if not path.exists():
            continue
        found = True
        payload = path.read_bytes()
        if name == "tokenizer_config.json":
            payload = _stable_tokenizer_config(payload)
        digest.update(name.encode() + b"\0" + hashlib.sha256(payload).digest())
    if not found:
        raise DataError(f"{root}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...)")
    return digest.hexdigest()[:16]


def _stable_tokenizer_config(payload: bytes) -> bytes:
    """Drop fields that differ between copies of one tokenizer but do not change ids (max length)."""
    try:
        config = json.loads(payload)
    except json.JSONDecodeError:
        return payload
    config.pop("model_max_length", None)
    return json.dumps(config, sort_keys=True).encode()


def cache_folder(model_path: str | Path) -> Path:
    return throughput_dir() / tokenizer_key(model_path)


def bucket_file(folder: Path, bucket: int) -> Path:
    return folder / f"bucket_{bucket}.parquet"


# ---- build ---------------------------------------------------------------------------------------

def build_throughput(
    model_path: str | Path,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    per_cell: int = DEFAULT_PER_CELL,
    tiers: Sequence[str] = ALL_TIERS,
    seed: int = 0,
    reserve_output: int = DEFAULT_RESERVE_OUTPUT,
    progress: bool = True,
) -> dict[str, Any]:
    from tqdm import tqdm

    from speedbench_plugin.data.corpora import Corpora
    from speedbench_plugin.data.lengths import PAD_TEXT, chat_frame
    from speedbench_plugin.data.sources import SourceLog
    from speedbench_plugin.prompts import ChatTokenizer

    unknown = [t for t in tiers if t not in ALL_TIERS]
    if unknown:
        raise DataError(f"unknown tier(s) {', '.join(unknown)} (expected {', '.join(ALL_TIERS)})")
    started = time.perf_counter()
    chat = ChatTokenizer(str(model_path))
    frame = chat_frame(chat)
    context = chat.context_length
    folder = cache_folder(model_path)
    # One builder per tokenizer folder at a time: each merges its buckets into the same manifest.
    with file_lock(folder / ".speedbench-build.lock"):
        try:
            manifest = _read_manifest(folder) or {}
        except DataError as exc:  # a damaged manifest is rebuilt; its buckets are rebuilt when next asked for
            log.warning("%s; starting a new one", exc)
            manifest = {}
        sources = SourceLog()
        corpora = Corpora(sources)
        pad = chat.encode_text(PAD_TEXT)
        built: dict[str, Any] = dict(manifest.get("buckets", {}))
        skipped: dict[str, str] = {}
        for bucket in buckets:
            if bucket + reserve_output > context:
                reason = (f"bucket {bucket} + {reserve_output} reserved output tokens exceed the model's context "
                          f"of {context}")
                skipped[str(bucket)] = reason
                print(f"skip: {reason}", flush=True)
                continue
            t0 = time.perf_counter()
            rows = []
            cells = [(tier, i) for tier in tiers for i in range(per_cell)]
            for tier, i in tqdm(cells, desc=f"throughput bucket {bucket}", unit="prompt", disable=not progress):
                rows.append(_build_one(chat, frame, corpora, pad, tier, bucket, i, seed))
            bad = [r["question_id"] for r in rows if len(r["prompt_ids"]) != bucket]
            if bad:
                raise AssertionError(f"bucket {bucket}: {len(bad)} prompts have the wrong length, e.g. {bad[:3]}")
            atomic_write_bytes(bucket_file(folder, bucket), _to_parquet(rows))
            record_files(folder, [bucket_file(folder, bucket).name])
            built[str(bucket)] = {
                "file": bucket_file(folder, bucket).name,
                "per_cell": per_cell,
                "tiers": list(tiers),
                "rows": len(rows),
                "length_check": f"{len(rows)}/{len(rows)} prompts are exactly {bucket} tokens",
                "sub_tasks": _count(r["sub_task"] for r in rows),
                "prompt_sha256": {r["question_id"]: r["sha256"] for r in rows},
                "build_seconds": round(time.perf_counter() - t0, 2),
            }
        manifest = {
            "kind": "speedbench-throughput",
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tokenizer": {"key": folder.name, "model_path": str(model_path), "context_length": context,
                          "chat_template": chat.has_chat_template, "frame_prefix_tokens": len(frame.prefix),
                          "frame_suffix_tokens": len(frame.suffix), "frame_matches_template_encoding": frame.exact},
            "seed": seed,
            "rules": {"length": "prompt_ids = template prefix + body + closing instruction + template suffix, "
                                "exactly `bucket` tokens; the body is cut, or padded by repeating "
                                f"{PAD_TEXT!r}, at token level",
                      "context": f"built when bucket + {reserve_output} <= context; skipped at load when "
                                 "bucket + max_tokens > context",
                      "random": "seeded uniform token ids from the vocabulary minus special tokens, inside the same frame"},
            "buckets": built,
            "skipped_buckets": skipped,
            "fallbacks": corpora.fallbacks,
            "sources": sources.entries,
            "sources_missing": sources.missing,
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        atomic_write_json(folder / "manifest.json", manifest)
        record_files(folder, ["manifest.json"])
        return manifest


def _build_one(chat: ChatTokenizer, frame: ChatFrame, corpora: Corpora, pad: list[int], tier: str, bucket: int,
               index: int, seed: int) -> dict[str, Any]:
    import numpy as np

    from speedbench_plugin.data.lengths import exact_prompt
    from speedbench_plugin.data.pools import _seed

    rng = np.random.default_rng(_seed("throughput", seed, tier, bucket, index))
    qid = f"{tier}/{bucket}/{index:04d}"
    if tier == RANDOM_TIER:
        vocab = _plain_vocab(chat)
        body = [int(t) for t in vocab[rng.integers(len(vocab), size=bucket - frame.overhead)]]
        ids = exact_prompt(frame, body, [], bucket, pad)
        return _row(qid, bucket, tier, ids, "random", "random_tokens")
    chars = int((bucket - frame.overhead) * 6)  # more than enough text; the cut makes it exact

    def fits(head: str, text: str, tail: str) -> int:
        """Characters of ``text`` that survive the cut to the bucket, between ``head`` and ``tail``."""
        ids = chat.encode_text(text)
        budget = max(0, bucket - frame.overhead - len(chat.encode_text(head)) - len(chat.encode_text(tail)))
        return len(text) if len(ids) <= budget else len(chat.decode(ids[:budget]))

    if tier == "low_entropy":
        parts = corpora.low_entropy(rng, chars, index)
    elif tier == "mixed":
        parts = corpora.mixed(rng, chars, index, fits)
    else:
        parts = corpora.high_entropy(rng, chars, index)
    body = chat.encode_text(parts.head + parts.document)
    ids = exact_prompt(frame, body, chat.encode_text(parts.tail), bucket, pad)
    return _row(qid, bucket, tier, ids, parts.source, parts.sub_task)


_PLAIN_VOCAB: dict[str, Any] = {}


def _plain_vocab(chat: ChatTokenizer) -> Any:
    """The vocabulary's ids minus special and added tokens (a numpy array), computed once per tokenizer."""
    import numpy as np

    if chat.model_path not in _PLAIN_VOCAB:
        tokenizer = chat.tokenizer
        special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        _PLAIN_VOCAB[chat.model_path] = np.array([i for i in range(len(tokenizer)) if i not in special],
                                                 dtype=np.int64)
    return _PLAIN_VOCAB[chat.model_path]


def _row(qid: str, bucket: int, tier: str, ids: list[int], source: str, sub_task: str) -> dict[str, Any]:
    return {"question_id": qid, "bucket": bucket, "tier": tier, "sub_task": sub_task, "source": source,
            "prompt_ids": ids, "sha256": _ids_sha256(ids)}


def _ids_sha256(ids: Iterable[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def _to_parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("question_id", pa.string()), ("bucket", pa.int32()), ("tier", pa.string()),
                        ("sub_task", pa.string()), ("source", pa.string()), ("prompt_ids", pa.list_(pa.int32())),
                        ("sha256", pa.string())])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    return buffer.getvalue()


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("buckets"), dict):
        raise DataError(f"{path}: not a throughput manifest (no 'buckets' table)")
    return manifest


def _rebuild_command(model_path: str | Path, buckets: Sequence[int], manifest: dict[str, Any] | None) -> str:
    """The exact build command for ``buckets``, with the size and tiers they were built with."""
    command = f"python -m speedbench_plugin.data build-throughput --model {model_path}"
    if buckets:
        command += f" --buckets {','.join(str(b) for b in buckets)}"
    info = (manifest or {}).get("buckets", {}).get(str(buckets[0])) if buckets else None
    if info:
        command += f" --per-cell {info['per_cell']}"
        if list(info["tiers"]) != list(ALL_TIERS):
            command += f" --tiers {','.join(info['tiers'])}"
    if manifest and manifest.get("seed"):
        command += f" --seed {manifest['seed']}"
    return command


def _verify(folder: Path, names: list[str], command: str) -> None:
    """The files the load reads, against the checksums the build recorded (once per process each)."""
    from speedbench_plugin.data.loader import DataUnavailable

    try:
        verify_files(folder, names, command)
    except CacheIntegrityError as exc:
        raise DataUnavailable(str(exc)) from exc


# ---- load ----------------------------------------------------------------------------------------

def plan_buckets(model_path: str | Path, buckets: Sequence[int] | None, max_tokens: int = 0) -> tuple[list[int], list[SkippedBucket]]:
    """Which requested buckets fit ``bucket + max_tokens <= context``; the rest with the reason."""
    from speedbench_plugin.prompts import ChatTokenizer

    context = ChatTokenizer(str(model_path)).context_length
    wanted = list(buckets) if buckets is not None else list(DEFAULT_BUCKETS)
    keep, skipped = [], []
    for bucket in wanted:
        if bucket + max_tokens > context:
            skipped.append(SkippedBucket(bucket, f"bucket {bucket} + {max_tokens} output tokens exceed "
                                                 f"{Path(model_path).name}'s context of {context}"))
        else:
            keep.append(bucket)
    return keep, skipped


def load_throughput(
    model_path: str | Path,
    buckets: Sequence[int] | None = None,
    tiers: Sequence[str] | None = None,
    num_per_cell: int | None = None,
    max_tokens: int = 0,
) -> list[ThroughputPrompt]:
    """The cached prompts for this model's tokenizer, bucket by bucket, tiers in order, then index.

    ``buckets=None`` means every default bucket that fits; a bucket that does not fit is skipped
    with a logged message (see :func:`plan_buckets`). A bucket that fits but is not built is an
    error that says how to build it.
    """
    from speedbench_plugin.data.loader import DataUnavailable

    folder = cache_folder(model_path)
    if not (folder / "manifest.json").exists():
        raise DataUnavailable(f"no throughput prompts for this tokenizer ({folder}): "
                              + BUILD_HINT.format(model=model_path))
    _verify(folder, ["manifest.json"], _rebuild_command(model_path, list(buckets or []), None))
    try:
        manifest = _read_manifest(folder)
    except DataError as exc:
        raise DataUnavailable(f"{exc}: rebuild with `{_rebuild_command(model_path, list(buckets or []), None)}`") from exc
    assert manifest is not None
    tiers = list(tiers) if tiers is not None else list(ALL_TIERS)
    unknown = [t for t in tiers if t not in ALL_TIERS]
    if unknown:
        raise DataError(f"unknown tier(s) {', '.join(unknown)} (expected {', '.join(ALL_TIERS)})")
    keep, skipped = plan_buckets(model_path, buckets, max_tokens)
    for skip in skipped:
        log.warning("skipping throughput bucket: %s", skip.reason)
    prompts: list[ThroughputPrompt] = []
    for bucket in keep:
        info = manifest["buckets"].get(str(bucket))
        if info is None:
            raise DataUnavailable(f"throughput bucket {bucket} is not built for {model_path} ({folder}): run "
                                  f"`python -m speedbench_plugin.data build-throughput --model {model_path} "
                                  f"--buckets {bucket}`")
        missing_tiers = [t for t in tiers if t not in info["tiers"]]
        if missing_tiers or (num_per_cell is not None and num_per_cell > info["per_cell"]):
            raise DataUnavailable(
                f"bucket {bucket} was built with {info['per_cell']} prompts per tier for tiers {info['tiers']}; "
                f"asked for {num_per_cell} of {tiers}: rebuild with `python -m speedbench_plugin.data "
                f"build-throughput --model {model_path} --per-cell {num_per_cell or info['per_cell']}`")
        _verify(folder, [bucket_file(folder, bucket).name], _rebuild_command(model_path, [bucket], manifest))
        prompts.extend(_read_bucket(bucket_file(folder, bucket), bucket, tiers, num_per_cell))
    return prompts


def _read_bucket(path: Path, bucket: int, tiers: list[str], num_per_cell: int | None) -> list[ThroughputPrompt]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    by_tier: dict[str, list[ThroughputPrompt]] = {t: [] for t in tiers}
    for number, row in enumerate(rows, start=1):
        if row["tier"] not in by_tier:
            continue
        ids = tuple(row["prompt_ids"])
        if len(ids) != bucket or row["bucket"] != bucket:
            raise DataError(f"{path} row {number}: {len(ids)} tokens in bucket {bucket}; rebuild the throughput data")
        by_tier[row["tier"]].append(ThroughputPrompt(row["question_id"], bucket, row["tier"], ids, row["source"],
                                                     row["sub_task"]))
    out: list[ThroughputPrompt] = []
    for tier in tiers:
        out.extend(by_tier[tier][:num_per_cell] if num_per_cell is not None else by_tier[tier])
    return out
