"""Client CPU per output token in the steady-state window, from paired samples of the server's
generation counter and the client process tree's CPU time."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from speedbench_plugin.engines.wire import parse_prometheus

STEADY_FROM = 0.02  # the window opens once this share of the run's tokens was generated
GENERATION_COUNTER = "vllm:generation_tokens_total"
PROMPT_COUNTER = "vllm:prompt_tokens_total"


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic()
    tokens: float  # the server's generation counter
    cpu_s: float | None  # the client tree's CPU time so far; None once it has exited


@dataclass(frozen=True)
class Window:
    tokens: float  # output tokens generated inside the window
    cpu_s: float  # the client tree's CPU time inside it
    wall_s: float
    run_tokens: float  # every token generated during the run

    @property
    def cpu_us_per_token(self) -> float:
        return self.cpu_s / self.tokens * 1e6 if self.tokens > 0 else math.nan


def counter(text: str, name: str) -> float:
    """A Prometheus counter summed over its labels (engines, models)."""
    return sum(value for sample, _, value in parse_prometheus(text) if sample == name)


def tree_cpu_s(pid: int) -> float | None:
    """CPU time (user + system) of a process and every descendant alive now, plus what its
    finished children were charged; None when the process is gone."""
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            try:
                own = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += own.user + own.system
        return float(total)
    except psutil.NoSuchProcess:
        return None


def steady_window(samples: Sequence[Sample], steady_from: float = STEADY_FROM) -> Window:
    """The window from the first sample at ``steady_from`` of the run's tokens to the first sample
    that saw the last one. ``samples[0]`` is taken before the client starts, ``samples[-1]`` after
    it ended (its counter is the run's total)."""
    if len(samples) < 3:
        raise ValueError(f"{len(samples)} samples: the client ran too briefly to measure")
    base, total = samples[0].tokens, samples[-1].tokens - samples[0].tokens
    if total <= 0:
        raise ValueError("the server generated no tokens during the run")
    start = next(s for s in samples if s.tokens - base >= steady_from * total)
    end = next(s for s in samples if s.tokens - base >= total)
    if start.cpu_s is None or end.cpu_s is None:
        raise ValueError("the client exited before the sampler saw its last token: sample more often")
    if end is start:
        raise ValueError("the whole run fell between two samples: sample more often")
    return Window(end.tokens - start.tokens, end.cpu_s - start.cpu_s, end.t - start.t, total)
