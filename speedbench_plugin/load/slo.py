"""``--speedbench-slo ttft=0.5,tpot=0.05,e2el=10``: service-level objectives in seconds, any subset.

``ttft``: time to first token; ``tpot``: time per output token after the first; ``e2el``: end-to-end
request latency. All three are measured from the engine adapter's submission stamp (as ``vllm bench
serve --goodput``); a request meets its SLOs when it meets every one given.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from speedbench_plugin.metrics import SLO_KEYS


def parse_slo(raw: Any, name: str) -> dict[str, float] | None:
    """``"ttft=0.5,tpot=0.05"`` (or a preset's mapping) -> ``{"ttft": 0.5, "tpot": 0.05}``; None when unset."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, Mapping):
        pairs = [(str(k), v) for k, v in raw.items()]
    else:
        pairs = []
        for item in (raw if isinstance(raw, (list, tuple)) else str(raw).split(",")):
            key, sep, value = str(item).partition("=")
            if not sep:
                raise pytest.UsageError(f"--{name} {item!r}: expected KEY=SECONDS with KEY one of {', '.join(SLO_KEYS)}")
            pairs.append((key, value))
    targets: dict[str, float] = {}
    for key, value in pairs:
        key = key.strip().lower()
        if key not in SLO_KEYS:
            raise pytest.UsageError(f"--{name}: unknown SLO {key!r}; known: {', '.join(SLO_KEYS)} (seconds)")
        try:
            seconds = float(str(value).strip())
        except ValueError:
            raise pytest.UsageError(f"--{name} {key}={value!r}: not a number of seconds") from None
        if not seconds > 0 or math.isinf(seconds):
            raise pytest.UsageError(f"--{name} {key}={value!r}: must be a positive number of seconds")
        if key in targets:
            raise pytest.UsageError(f"--{name}: {key} is given twice")
        targets[key] = seconds
    return targets or None


def describe(targets: Mapping[str, float] | None) -> str:
    if not targets:
        return "no SLO"
    return ", ".join(f"{key} ≤ {value:g} s" for key, value in targets.items())
