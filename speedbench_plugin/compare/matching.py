"""Which baseline case a current case is compared with.

``id`` (default): the stable test id, e.g. ``test_qualitative[vllm-ngram_k3-coding]``; the
intended use, same drafter on a new engine version. ``drafter-method``: the drafter's id inside
the test id is replaced by its method (``ngram_k3_min3`` -> ``ngram``), so a changed drafter
configuration is compared with the baseline's drafter of the same method. A baseline holding two
drafters of one method makes that key ambiguous: such cases are "not comparable", never guessed.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from speedbench_plugin.record import Record


def drafter_method(drafter_id: str) -> str:
    """``ngram_k3_min3`` -> ``ngram``; ``none`` -> ``none`` (ids are ``method_k<k>_...``)."""
    return drafter_id.split("_", 1)[0]


def match_key(case_id: str, drafter_id: str | None, mode: str) -> str:
    if mode == "id" or not drafter_id:
        return case_id
    # The drafter id is one dash-separated part of the parameter id: [engine-drafter-...]
    pattern = rf"(?<=[\[-]){re.escape(drafter_id)}(?=[\]-])"
    return re.sub(pattern, f"{drafter_method(drafter_id)}*", case_id, count=1)


def record_key(record: Record, mode: str) -> str:
    return match_key(record.case_id, record.case.drafter.id, mode)


def index_by_key(records: Iterable[Record], mode: str) -> dict[str, list[Record]]:
    index: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        index[record_key(record, mode)].append(record)
    return dict(index)
