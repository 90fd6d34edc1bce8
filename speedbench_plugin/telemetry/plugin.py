"""Telemetry in a session: the sampling interval option, the ``cost`` section of each record and
``cost_vs_none`` across cases. Registered by the lead plugin (:mod:`speedbench_plugin.plugin`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from speedbench_plugin import options as o
from speedbench_plugin.record import MeasuredRound, Record
from speedbench_plugin.telemetry.cost import SECTION, cost_section, session_cost_ratios


def _interval(raw: Any, name: str) -> float | None:
    value = float(o.number(0.0, 60.0)(raw, name))
    return value or None


TELEMETRY_INTERVAL = o.Option(
    "speedbench-telemetry-interval",
    "seconds between telemetry samples (CPU seconds of the engine's processes, RAPL, NVML) taken on their own thread "
    "during measured rounds; 0 turns telemetry off",
    "0.2", kind=_interval, preset_key="telemetry_interval",
)
OPTIONS = (TELEMETRY_INTERVAL,)


def interval(config: pytest.Config) -> float | None:
    """The sampling interval in seconds, None when telemetry is off."""
    value: float | None = o.value(config, TELEMETRY_INTERVAL)
    return value


def pytest_speedbench_update_record(config: pytest.Config, record: Record,
                                    rounds: Sequence[MeasuredRound]) -> dict[str, Any] | None:
    section = cost_section(record, rounds)
    return {SECTION: section} if section is not None else None


def pytest_speedbench_session_sections(config: pytest.Config, records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    return session_cost_ratios(records)
