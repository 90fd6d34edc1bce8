"""pytest-benchmark's end of session, made safe for an interrupted or faulty run.

pytest-benchmark builds its ``--benchmark-json`` from every case that asked for timing. A case cut
by Ctrl-C or SIGTERM asked and never got a round: its statistics are empty, and pytest-benchmark's
writer fails on them (``min() arg is an empty sequence``), taking every later session-end writer
with it. Its file is also written in place, so a full disk leaves it truncated. Before its
session-end runs, :func:`guard` drops the empty statistics (such a case has no record either: it
did not finish) and routes its file through the suite's atomic writer.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin.cache import ResultsWriteError, atomic_write_text


def benchmark_session(config: pytest.Config) -> Any:
    """pytest-benchmark's session object, or None when the plugin is absent or disabled."""
    return getattr(config, "_benchmarksession", None)


def drop_unmeasured(session: Any) -> int:
    """Remove the cases without a single timed round; returns how many were removed."""
    benchmarks = getattr(session, "benchmarks", None)
    if not isinstance(benchmarks, list):
        return 0
    kept = [bench for bench in benchmarks if _measured(bench)]
    dropped = len(benchmarks) - len(kept)
    benchmarks[:] = kept
    return dropped


def _measured(bench: Any) -> bool:
    stats = getattr(bench, "stats", None)
    return bool(getattr(stats, "data", None))


def guard(config: pytest.Config, written: Callable[[Path], None], failed: Callable[[ResultsWriteError], None]) -> None:
    """Prepare pytest-benchmark's session end: no empty statistics, an atomic JSON writer that
    reports a failure through ``failed`` (the previous file stays) instead of raising."""
    session = benchmark_session(config)
    if session is None:
        return
    drop_unmeasured(session)
    if not hasattr(session, "save_json"):  # a release without this writer: nothing to route
        return

    def save_json(output_json: dict[str, Any]) -> None:
        given = session.json  # a path in pytest-benchmark 4+, an open file before
        target = Path(given) if isinstance(given, (str, os.PathLike)) else Path(given.name)
        try:
            atomic_write_text(target, json.dumps(output_json, ensure_ascii=True, indent=4, default=str))
        except ResultsWriteError as exc:
            failed(exc)
            return
        written(target)

    session.save_json = save_json
