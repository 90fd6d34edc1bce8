"""An engine's start-up output, kept in a file, and the root cause read back from it.

vLLM starts its engine core (and workers) in child processes: when one of them fails, the parent
raises "Engine core initialization failed. See root cause above." and the cause is only in the
children's log lines above it, which a CI job summary or a report never shows. :class:`StartLog`
copies this process's stdout and stderr, at the file-descriptor level so that child processes
started meanwhile inherit the copy, into a log file while the output still reaches the terminal;
:func:`root_cause` reads the exception lines back out of it.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

LOG_DIR_ENV = "SPEEDBENCH_ENGINE_LOG_DIR"  # where start-up logs go (the run folder); default: the temp dir
_COUNTER = itertools.count(1)
# vLLM's prefixes: "(EngineCore_DP0 pid=12) " and "ERROR 12-04 18:33:03 [core.py:1510] ".
_PROCESS_PREFIX = re.compile(r"^\((?:[\w:.-]+) pid=\d+\)\s?")
_LOG_PREFIX = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[[^\]]*\]\s?")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure)(?:: .*)?$")
# The parent's wrappers, which only point at the children's cause.
_GENERIC = ("Engine core initialization failed", "See root cause above", "EngineDeadError", "Process EngineCore")


def log_dir() -> Path:
    path = Path(os.environ.get(LOG_DIR_ENV) or tempfile.gettempdir())
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean(line: str) -> str:
    line = _PROCESS_PREFIX.sub("", line.rstrip("\n"))
    return _LOG_PREFIX.sub("", line)


def root_cause(text: str, limit: int = 3) -> str | None:
    """The exception lines of the tracebacks in ``text``, most specific first, without the parent's
    generic wrappers; a bare exception (``AssertionError``) comes with the statement that raised it."""
    lines = [_clean(line) for line in text.splitlines()]
    causes: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if line != line.lstrip() or not _EXCEPTION.match(stripped) or any(g in stripped for g in _GENERIC):
            continue
        code = i - 1
        while code > 0 and lines[code].strip() and not lines[code].strip().strip("^~ "):
            code -= 1  # Python 3.11's carets under the failing expression
        if ":" not in stripped and code >= 1 and lines[code - 1].strip().startswith("File "):
            where = re.sub(r'^File "(?:.*/site-packages/)?([^"]+)", line (\d+).*$', r"\1:\2", lines[code - 1].strip())
            stripped = f"{stripped} at {where}: {lines[code].strip()}"
        if stripped not in causes:
            causes.append(stripped)
    if not causes:
        return None
    # The deepest cause is raised first in a chain, but a child's traceback is printed before the
    # parent's: keep the order of appearance, and the first few only.
    return " | ".join(cause[:500] for cause in causes[:limit])


def server_log_cause(path: Path, tail_lines: int = 400) -> str | None:
    """What a server's log (not a child of this process) says went wrong: the exception lines of its
    last lines, else its last lines that mention an error."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(its log {path} cannot be read: {exc.strerror or exc})"
    lines = text.splitlines()[-tail_lines:]
    cause = root_cause("\n".join(lines))
    if cause:
        return cause
    errors = [_clean(line).strip() for line in lines if re.search(r"\b(ERROR|CRITICAL|Error|error)\b", line)]
    return " | ".join(errors[-3:]) or None


class StartLog:
    """``with StartLog("vllm") as log: start()`` then ``log.path`` and ``log.root_cause()``.

    While inside, fds 1 and 2 are pipes that a thread copies both to the original fds and to the log
    file; children started meanwhile keep writing through them, so their later output still reaches
    the terminal (and the log) after the block ends."""

    def __init__(self, name: str) -> None:
        self.path = log_dir() / f"{name}-start-{os.getpid()}-{next(_COUNTER)}.log"
        self._saved: dict[int, int] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._open = 0

    def __enter__(self) -> StartLog:  # noqa: PYI034 - a final class in practice
        self._file = open(self.path, "ab", buffering=0)
        self._open = 2
        for fd in (1, 2):
            try:
                saved = os.dup(fd)
            except OSError:  # no such fd (a daemon): nothing to copy
                self._open -= 1
                continue
            read, write = os.pipe()
            _flush_python_streams()
            os.dup2(write, fd)
            os.close(write)
            self._saved[fd] = saved
            thread = threading.Thread(target=self._copy, args=(read, saved), daemon=True, name=f"startlog-{fd}")
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        _flush_python_streams()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # this process writes to the terminal again; children keep the pipe
        self._saved.clear()
        if kind is not None:
            # A failed start: the children have exited or are exiting; let their last lines land.
            for thread in self._threads:
                thread.join(timeout=5)

    def _copy(self, read: int, out: int) -> None:
        with os.fdopen(read, "rb", buffering=0) as source:
            for chunk in iter(lambda: source.read(65536), b""):
                with self._lock:
                    if self._file is not None:
                        self._file.write(chunk)
                try:
                    os.write(out, chunk)
                except OSError:
                    pass
        os.close(out)
        with self._lock:
            self._open -= 1
            if self._open <= 0 and self._file is not None:
                self._file.close()
                self._file = None

    def text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def root_cause(self) -> str | None:
        return root_cause(self.text())

    def failure(self, exc: BaseException) -> str:
        """The start-up error for the suite's own line: the engine's root cause when its processes
        logged one, the exception otherwise, and where the full log is."""
        cause = self.root_cause()
        message = str(exc).strip() or type(exc).__name__
        if cause and cause not in message:
            message = f"{cause} (the engine said: {message[:300]})"
        return f"{message}; full start-up log: {self.path}"

    def started(self) -> None:
        """A start that worked: its log is kept only where a folder for it was named (the run folder)."""
        if not os.environ.get(LOG_DIR_ENV):
            with contextlib.suppress(OSError):
                self.path.unlink()  # the copying threads keep writing to the unlinked file harmlessly


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass

