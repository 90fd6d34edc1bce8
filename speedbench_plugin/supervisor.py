"""Engine supervision: a fault costs at most the case in flight.

After a case whose requests failed, the engine is checked: are the processes it started still
alive, and does it answer one short request within ``--speedbench-engine-check-timeout``? If not,
it is marked down with what died, and restarted before the next case (at most
``--speedbench-engine-restarts`` times). An engine that cannot be restarted is dead: every remaining
case of it errors at once with the reason, instead of hanging or crashing pytest.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import pytest

from speedbench_plugin.engines.base import Sampling
from speedbench_plugin.runner import CANCEL_GRACE_S, EngineHost, RequestLimits, WorkItem, run_round
from speedbench_plugin.settings import ENGINE_CHECK_TIMEOUT, ENGINE_RESTARTS, Settings

CHECK_PROMPT = (1, 2, 3, 4)
CHECK_TOKENS = 2


class EngineDown(RuntimeError):
    """The engine cannot serve the remaining cases; the message says why."""


def _children() -> dict[int, str]:
    """This process's descendants: pid -> name (vLLM names its engine core ``VLLM::EngineCore``)."""
    try:
        import psutil
    except ImportError:  # psutil comes with vLLM; without it the check relies on the request alone
        return {}
    found = {}
    for child in psutil.Process(os.getpid()).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            found[child.pid] = child.name()
    return found


def _gone(processes: dict[int, str]) -> list[str]:
    """The processes among ``processes`` that exited (or are zombies waiting to be reaped)."""
    try:
        import psutil
    except ImportError:
        return []
    gone = []
    for pid, name in processes.items():
        try:
            proc = psutil.Process(pid)
            alive = proc.status() != psutil.STATUS_ZOMBIE and proc.name() == name
        except psutil.Error:
            alive = False
        if not alive:
            gone.append(f"{name} (pid {pid})")
    return gone


class EngineSupervisor:
    """One engine (one drafter) for the session: starts it, checks it, restarts it, closes it."""

    def __init__(self, settings: Settings, label: str, start: Callable[[], EngineHost]) -> None:
        self.settings = settings
        self.label = label  # e.g. "engine vllm with drafter ngram:k=3"
        self._start = start
        self.restarts_left = settings.engine_restarts
        self.restarts = 0
        self.host: EngineHost | None = None
        self.processes: dict[int, str] = {}
        self.down: str | None = None  # it stopped answering: restart before the next case
        self.dead: str | None = None  # it cannot serve the remaining cases

    def start(self) -> EngineHost:
        """Start the engine and note the processes it started (to say later which of them died)."""
        before = _children()
        self.host = self._start()
        self.processes = {pid: name for pid, name in _children().items() if pid not in before}
        self.down = None
        return self.host

    def check(self) -> str | None:
        """After failed requests: None when the engine still answers; otherwise why not, and the
        engine is marked down (restarted before the next case, if restarts are left)."""
        if self.host is None or self.dead:
            return self.dead
        problems = []
        gone = _gone(self.processes)
        if gone:
            problems.append(f"engine process{'es' if len(gone) > 1 else ''} {', '.join(gone)} "
                            f"{'are' if len(gone) > 1 else 'is'} gone")
        limit = self.settings.engine_check_timeout
        limits = RequestLimits(idle_s=limit, total_s=limit,
                               idle_option=f"--{ENGINE_CHECK_TIMEOUT.name}", total_option=f"--{ENGINE_CHECK_TIMEOUT.name}")
        item = WorkItem("engine-check", "check", prompt_ids=CHECK_PROMPT)
        try:
            probe = self.host.run(
                run_round(self.host.engine, None, [item], Sampling(CHECK_TOKENS), 1, limits=limits),
                timeout=None if limit is None else limit + CANCEL_GRACE_S + 5,
                what=f"{self.label}: the health check")
            errors = [r.stream.error for r in probe.requests if r.stream.error]
        except Exception as exc:  # noqa: BLE001 - any failure of the check means the engine is down
            errors = [f"{type(exc).__name__}: {exc}"]
        if errors:
            problems.append(f"a {CHECK_TOKENS}-token check request failed: {errors[0]}")
        if not problems:
            return None
        reason = "; ".join(problems)
        if self.restarts_left <= 0:
            self.dead = (f"{self.label} stopped answering ({reason}) and no restart is left "
                         f"(--{ENGINE_RESTARTS.name} {self.settings.engine_restarts})")
            self.close()
            return self.dead
        self.down = reason
        return reason

    def ensure_up(self) -> EngineHost:
        """The engine's host for the next case: restarted first if it is down. Raises
        :class:`EngineDown` when it is dead or the restart fails."""
        if self.dead:
            raise EngineDown(self.dead)
        if self.down is not None:
            reason = self.down
            self.close()
            self.restarts_left -= 1
            self.restarts += 1
            try:
                self.start()
            except (Exception, pytest.fail.Exception) as exc:  # noqa: BLE001 - start_engine fails with pytest.fail
                self.dead = f"{self.label} stopped answering ({reason}); restarting it failed: {exc}"
                raise EngineDown(self.dead) from None
        assert self.host is not None
        return self.host

    def close(self) -> None:
        if self.host is not None:
            host, self.host = self.host, None
            # An engine being discarded may fail to stop too (its core is gone): that must not stop
            # the restart or the session's teardown.
            with contextlib.suppress(Exception):
                host.close(timeout=60 if host.responsive else 5)
