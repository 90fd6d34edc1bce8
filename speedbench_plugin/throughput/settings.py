"""The throughput plugin's options (as data), read and checked once per session, and the
dynamic-SD tables a sweep emitted. Kept out of the plugin module so that the report and the cases
read them without importing a pytest plugin."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin import options as o

if TYPE_CHECKING:
    from speedbench_plugin.drafters import DrafterSpec

DEFAULT_PER_CELL = 8  # prompts per (bucket, tier) case on CPU; --speedbench-num-requests overrides


def _tiers(raw: Any, name: str) -> tuple[str, ...]:
    from speedbench_plugin.data import ALL_TIERS

    tiers = o.words(raw, name) or ()
    unknown = [t for t in tiers if t not in ALL_TIERS]
    if unknown or not tiers:
        raise pytest.UsageError(f"--{name}: unknown tier(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ALL_TIERS)}")
    return tiers


def _table_file(raw: Any, name: str) -> Path | None:
    if raw is None or str(raw).strip() == "":
        return None
    path = Path(str(raw)).expanduser()
    if path.is_dir():
        path = path / "dynamic_tables.json"
    if not path.is_file():
        raise pytest.UsageError(f"--{name} {raw!r}: no such file (a throughput sweep with --speedbench-draft-lengths "
                                "writes results/<run>/dynamic_tables.json)")
    return path


DRAFT_LENGTHS = o.Option("speedbench-draft-lengths", "draft-length sweep: comma list of k, each SD drafter runs at every k",
                         kind=o.optional_positive_ints)
BUCKETS = o.Option("speedbench-buckets", "throughput input-length buckets in tokens, comma list (1k = 1024)", "1024",
                   kind=o.token_counts)
TIERS = o.Option("speedbench-tiers", "throughput tiers: low_entropy, mixed, high_entropy, random (comma list)",
                 "low_entropy,mixed,high_entropy,random", kind=_tiers)
DYNAMIC_TABLE = o.Option("speedbench-dynamic-table",
                         "validate the dynamic-SD tables a sweep emitted: its dynamic_tables.json (or its results folder)",
                         kind=_table_file)
OPTIONS = (DRAFT_LENGTHS, BUCKETS, TIERS, DYNAMIC_TABLE)

THROUGHPUT_SETTINGS_KEY = pytest.StashKey["ThroughputSettings"]()


@dataclass(frozen=True)
class DynamicEntry:
    """One emitted table: which cell and drafter family it was measured for."""

    bucket: int
    tier: str
    family: str
    drafter: str  # the family's spec at its largest k, e.g. "ngram:k=4"
    table: list[list[int]]
    best_fixed: dict[str, dict[str, Any]]  # concurrency -> the sweep's best fixed k and its output TPS

    @property
    def id(self) -> str:
        return f"b{self.bucket}-{self.tier}-{self.family}"


def load_dynamic_entries(path: Path) -> list[DynamicEntry]:
    try:
        raw = json.loads(path.read_text())
        return [DynamicEntry(int(e["bucket"]), str(e["tier"]), str(e["family"]), str(e["drafter"]),
                             [list(map(int, row)) for row in e["table"]], dict(e.get("best_fixed") or {}))
                for e in raw["tables"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise pytest.UsageError(f"--{DYNAMIC_TABLE.name} {path}: not a dynamic_tables.json written by a sweep ({exc})") from None


@dataclass(frozen=True)
class ThroughputSettings:
    draft_lengths: tuple[int, ...] | None
    buckets: tuple[int, ...]
    tiers: tuple[str, ...]
    per_cell: int
    dynamic: tuple[DynamicEntry, ...]

    @classmethod
    def from_config(cls, config: pytest.Config, num_requests: int | None) -> ThroughputSettings:
        table_file = o.value(config, DYNAMIC_TABLE)
        return cls(
            draft_lengths=o.value(config, DRAFT_LENGTHS),
            buckets=o.value(config, BUCKETS),
            tiers=o.value(config, TIERS),
            per_cell=num_requests or DEFAULT_PER_CELL,
            dynamic=tuple(load_dynamic_entries(table_file)) if table_file else (),
        )


def expand_drafters(drafters: tuple[DrafterSpec, ...], draft_lengths: tuple[int, ...] | None) -> tuple[DrafterSpec, ...]:
    """Every SD drafter once per draft length (``none`` stays once); order kept, duplicates dropped."""
    if not draft_lengths:
        return drafters
    expanded: list[DrafterSpec] = []
    for drafter in drafters:
        for variant in ([drafter] if not drafter.enabled else [drafter.with_k(k) for k in draft_lengths]):
            if variant.id not in {d.id for d in expanded}:
                expanded.append(variant)
    return tuple(expanded)


def throughput_settings(config: pytest.Config) -> ThroughputSettings:
    return config.stash[THROUGHPUT_SETTINGS_KEY]
