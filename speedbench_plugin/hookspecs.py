"""Hooks other plugins (and the suite's own gate, throughput analyses and reports) implement.

The order, as pytest-benchmark's generate -> update -> write: a case's record is built once, then
``pytest_speedbench_update_record`` adds sections, then ``pytest_speedbench_check`` judges it. At
the end of the session, on the controller, ``pytest_speedbench_session_sections`` adds cross-case
figures, and every output is written once from the final records (``pytest_speedbench_records``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy
import pytest

if TYPE_CHECKING:
    from speedbench_plugin.record import MeasuredRound, Record

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_speedbench_update_record(
    config: pytest.Config, record: Record, rounds: Sequence[MeasuredRound]
) -> dict[str, Any] | None:
    """Sections to add to one case's record, before it is judged: ``{name: JSON-able value}``.
    ``rounds`` hold the raw streams (chunk timestamps) the record summarises."""


@hookspec
def pytest_speedbench_check(config: pytest.Config, record: Record) -> list[str] | None:
    """Judge one case's finished record; return failure messages (the case fails with them)."""


@hookspec
def pytest_speedbench_session_sections(
    config: pytest.Config, records: Sequence[Record]
) -> dict[str, dict[str, Any]] | None:
    """Cross-case figures at the end of the session, on the controller: ``{case_id: {section: value}}``."""


@hookspec
def pytest_speedbench_records(config: pytest.Config, records: Sequence[Record]) -> None:
    """All final records of the session, on the controller, once: write files from them."""


@hookspec
def pytest_speedbench_terminal_summary(config: pytest.Config, records: Sequence[Record], terminalreporter: Any) -> None:
    """Add sections to the terminal summary after the per-case table."""
