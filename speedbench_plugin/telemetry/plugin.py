"""Telemetry in a session: the sampling interval option, the ``cost`` section of each record and
``cost_vs_none`` across cases. Registered by the lead plugin (:mod:`speedbench_plugin.plugin`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from speedbench_plugin.record import MeasuredRound, Record
from speedbench_plugin.telemetry.cost import SECTION, cost_section, session_cost_ratios
from speedbench_plugin.telemetry.settings import OPTIONS, TELEMETRY_INTERVAL, interval

__all__ = ["OPTIONS", "TELEMETRY_INTERVAL", "interval"]


def pytest_speedbench_update_record(config: pytest.Config, record: Record,
                                    rounds: Sequence[MeasuredRound]) -> dict[str, Any] | None:
    section = cost_section(record, rounds)
    return {SECTION: section} if section is not None else None


def pytest_speedbench_session_sections(config: pytest.Config, records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    return session_cost_ratios(records)
