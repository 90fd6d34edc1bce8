"""The run's journal: ``results/<run>/journal.jsonl``, one JSON object per line, appended as each
case finishes (flushed and fsynced), so a run killed at any moment keeps every finished case.

Lines, in order: a ``session`` line (the configuration's fingerprint; one more per resumed
session), one ``record`` line per finished case (its record, as ``Record.to_json()`` gives it,
before the session-level sections), and an ``end`` line when a session ends normally or
interrupted (``partial``). A line cut short by a kill is ignored on reading.

``--speedbench-resume RUN_DIR`` reads the journal, refuses it when the configuration differs
(naming each differing field), runs only the cases it lacks and writes the complete outputs.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin import __version__
from speedbench_plugin.cache import nan_to_none
from speedbench_plugin.record import SCHEMA_VERSION
from speedbench_plugin.redaction import scrub

JOURNAL_NAME = "journal.jsonl"
JOURNAL_VERSION = 1

# Options that change where and how a run reports, or what a fault may cost, but never what a case
# measures: a resumed run may change them. Every other speedbench option is in the fingerprint.
NOT_IN_FINGERPRINT = frozenset({
    "speedbench_run_dir", "speedbench_json", "speedbench_resume", "speedbench_progress",
    "speedbench_request_timeout", "speedbench_request_total_timeout", "speedbench_round_timeout",
    "speedbench_engine_start_timeout", "speedbench_engine_check_timeout", "speedbench_engine_restarts",
    "speedbench_request_retries", "speedbench_save_baseline", "speedbench_al_convention",
})


class JournalError(ValueError):
    """A journal that cannot be resumed; the message says why and what to do."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _option_value(config: pytest.Config, dest: str) -> Any:
    value = config.getoption(dest)
    if value is None:
        try:
            value = config.getini(dest) or None
        except ValueError:  # an option without an ini mirror
            value = None
    return value


def fingerprint(config: pytest.Config) -> dict[str, Any]:
    """What makes two sessions' records comparable: every speedbench option that shapes a case
    (as given, command line then ini), the suite and record versions, and the machine."""
    options = {}
    for dest in sorted(vars(config.option)):
        if not dest.startswith("speedbench_") or dest in NOT_IN_FINGERPRINT:
            continue
        value = _option_value(config, dest)
        if value is not None and value != [] and value != "":
            options[dest] = value
    found: dict[str, Any] = scrub(json.loads(json.dumps(options, default=str)))
    return {"options": found, "speedbench_version": __version__, "record_schema": SCHEMA_VERSION,
            "machine": platform.node()}


def differences(journal: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each field that differs, named as the user would set it."""
    out = []
    for key in sorted(set(journal) | set(current)):
        if key == "options":
            continue
        if journal.get(key) != current.get(key):
            out.append(f"{key}: journal {journal.get(key)!r}, this run {current.get(key)!r}")
    old, new = journal.get("options") or {}, current.get("options") or {}
    for dest in sorted(set(old) | set(new)):
        if old.get(dest) != new.get(dest):
            name = "--" + dest.replace("_", "-")
            out.append(f"{name}: journal {old.get(dest, '(not set)')!r}, this run {new.get(dest, '(not set)')!r}")
    return out


@dataclass
class JournalContents:
    path: Path
    fingerprint: dict[str, Any] | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # nodeid -> record JSON, last wins
    sessions: int = 0
    ended_partial: bool | None = None  # the last session's end line: partial or not; None if it had none
    bad_lines: list[int] = field(default_factory=list)  # cut short by a kill, or not JSON


def read_journal(path: Path) -> JournalContents:
    contents = JournalContents(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                contents.bad_lines.append(number)
                continue
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if kind == "session":
                contents.sessions += 1
                contents.ended_partial = None
                if contents.fingerprint is None:
                    contents.fingerprint = entry.get("fingerprint") or {}
            elif kind == "record" and isinstance(entry.get("record"), dict):
                contents.records[str(entry.get("nodeid"))] = entry["record"]
            elif kind == "end":
                contents.ended_partial = bool(entry.get("partial"))
            else:
                contents.bad_lines.append(number)
    return contents


def open_for_resume(run_dir: Path, current: Mapping[str, Any]) -> JournalContents:
    """The journal of ``run_dir``, checked against this session's fingerprint."""
    path = run_dir / JOURNAL_NAME
    if not path.is_file():
        raise JournalError(f"--speedbench-resume {run_dir}: no {JOURNAL_NAME} there; a run writes it into its "
                           "results/<run>/ folder as its cases finish")
    contents = read_journal(path)
    if contents.fingerprint is None:
        raise JournalError(f"--speedbench-resume {run_dir}: {path} has no session line; it is not a speedbench journal")
    diff = differences(contents.fingerprint, current)
    if diff:
        raise JournalError(
            f"--speedbench-resume {run_dir}: the journal was written by a different configuration, so its records "
            "would not be comparable with new ones:\n  " + "\n  ".join(diff)
            + "\nRun with the journal's settings, or start a new run without --speedbench-resume."
        )
    return contents


class JournalWriter:
    """Appends lines; each is one ``write`` followed by ``fsync``, so a kill leaves whole lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            created = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            self._end_torn_line(self._fd)
            if created:  # the new name must survive a crash too
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        return self._fd

    @staticmethod
    def _end_torn_line(fd: int) -> None:
        """A journal cut mid-line (a kill, a full disk) gets its line ended first, so that the next
        line starts whole instead of being appended onto the torn one (which reading skips)."""
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")

    def append(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(nan_to_none(scrub(dict(entry))), allow_nan=False, separators=(",", ":"), default=str) + "\n"
        data = line.encode("utf-8")
        fd = self._open()
        before = os.fstat(fd).st_size
        try:
            while data:
                written = os.write(fd, data)
                data = data[written:]
            os.fsync(fd)
        except OSError:
            # A full disk may take part of the line: cut it off, so the journal keeps whole lines.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise

    def session(self, fingerprint: Mapping[str, Any], resumed: bool) -> None:
        self.append({"kind": "session", "journal": JOURNAL_VERSION, "started": _now(), "resumed": resumed,
                     "fingerprint": dict(fingerprint)})

    def record(self, nodeid: str, record: Mapping[str, Any]) -> None:
        self.append({"kind": "record", "nodeid": nodeid, "finished": _now(), "record": dict(record)})

    def end(self, partial: bool, reason: str | None, finished: int) -> None:
        self.append({"kind": "end", "at": _now(), "partial": partial, "reason": reason, "finished": finished})

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
