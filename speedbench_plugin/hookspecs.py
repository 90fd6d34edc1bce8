"""Hooks other plugins (and the suite's own gate and reports) implement."""
from __future__ import annotations

from typing import Any

import pluggy
import pytest

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_speedbench_check(config: pytest.Config, record: dict[str, Any]) -> list[str] | None:
    """Judge one case's finished record; return failure messages (the case fails with them)."""


@hookspec
def pytest_speedbench_records(config: pytest.Config, records: list[dict[str, Any]]) -> None:
    """All records of the session, on the controller, once, before the results are written."""


@hookspec
def pytest_speedbench_terminal_summary(
    config: pytest.Config, records: list[dict[str, Any]], terminalreporter: Any
) -> None:
    """Add sections to the terminal summary after the per-case table."""
