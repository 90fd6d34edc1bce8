"""SPEED-Bench data: the schema, the published dataset, and the offline qualitative and throughput splits.

Importing this package is cheap: numpy, torch, transformers and datasets load only when a build or
a hub/throughput load needs them.
"""
from __future__ import annotations

from speedbench_plugin.data.loader import (
    HUB_CONFIGS,
    DataUnavailable,
    load_questions,
    no_prompts_reason,
    per_category,
    round_robin,
)
from speedbench_plugin.data.schema import (
    PLACEHOLDER,
    QUALITATIVE_CATEGORIES,
    RANDOM_TIER,
    THROUGHPUT_TIERS,
    DataError,
    PlaceholderRowsError,
    Question,
)
from speedbench_plugin.data.throughput import (
    ALL_TIERS,
    DEFAULT_BUCKETS,
    SkippedBucket,
    ThroughputPrompt,
    load_throughput,
    plan_buckets,
    tokenizer_key,
)

__all__ = [
    "ALL_TIERS", "DEFAULT_BUCKETS", "HUB_CONFIGS", "PLACEHOLDER", "QUALITATIVE_CATEGORIES", "RANDOM_TIER",
    "THROUGHPUT_TIERS", "DataError", "DataUnavailable", "PlaceholderRowsError", "Question", "SkippedBucket",
    "ThroughputPrompt", "load_questions", "load_throughput", "no_prompts_reason", "per_category", "plan_buckets", "round_robin",
    "tokenizer_key",
]
