"""The engine interface: token ids in, timestamped chunks and the engine's own SD counters out.

Every engine module implements :class:`Engine`. Timestamps are ``time.perf_counter()`` values taken
by the engine the moment a chunk reaches Python, so harness overhead stays out of the figures.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

from speedbench_plugin.drafters import DrafterSpec


class EngineError(RuntimeError):
    """An engine failed to start, rejected its configuration or failed a request."""


class RequestNotStarted(EngineError):
    """The request provably never reached the engine (connection refused; HTTP 429 or 503 before
    any byte of a stream), so the runner may send it again. ``retry_after``: the server's own wait
    in seconds (``Retry-After``), when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    ignore_eos: bool = False


@dataclass(frozen=True)
class EngineConfig:
    model: str
    drafter: DrafterSpec
    engine_args: dict[str, Any] = field(default_factory=dict)
    endpoint: str | None = None
    seed: int = 0


@dataclass
class Chunk:
    t: float
    token_ids: tuple[int, ...]

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class SpecCounts:
    """Speculative-decoding counters in vLLM's vocabulary.

    ``num_drafts`` counts verification steps that proposed at least one draft token;
    ``accepted_per_pos[i]`` counts those whose draft ``i`` (0-based) was accepted.
    ``num_steps`` counts every decode step, drafting or not, where the engine reports it.
    """

    num_drafts: int
    num_draft_tokens: int
    num_accepted_tokens: int
    accepted_per_pos: list[int]
    source: str
    num_steps: int | None = None

    def __sub__(self, before: SpecCounts) -> SpecCounts:
        width = max(len(self.accepted_per_pos), len(before.accepted_per_pos))
        mine = self.accepted_per_pos + [0] * (width - len(self.accepted_per_pos))
        theirs = before.accepted_per_pos + [0] * (width - len(before.accepted_per_pos))
        steps = None
        if self.num_steps is not None and before.num_steps is not None:
            steps = self.num_steps - before.num_steps
        return SpecCounts(
            self.num_drafts - before.num_drafts,
            self.num_draft_tokens - before.num_draft_tokens,
            self.num_accepted_tokens - before.num_accepted_tokens,
            [a - b for a, b in zip(mine, theirs)],
            self.source,
            steps,
        )

    @classmethod
    def total(cls, parts: Sequence[SpecCounts], source: str) -> SpecCounts:
        width = max((len(p.accepted_per_pos) for p in parts), default=0)
        per_pos = [0] * width
        for part in parts:
            for i, value in enumerate(part.accepted_per_pos):
                per_pos[i] += value
        steps = None if any(p.num_steps is None for p in parts) else sum(p.num_steps or 0 for p in parts)
        return cls(
            sum(p.num_drafts for p in parts),
            sum(p.num_draft_tokens for p in parts),
            sum(p.num_accepted_tokens for p in parts),
            per_pos,
            source,
            steps,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "num_drafts": self.num_drafts,
            "num_draft_tokens": self.num_draft_tokens,
            "num_accepted_tokens": self.num_accepted_tokens,
            "accepted_per_pos": list(self.accepted_per_pos),
            "num_steps": self.num_steps,
        }


@dataclass(frozen=True)
class StepRecord:
    """The engine's own per-step record of one request: drafts proposed and accepted in each
    verification step that drafted, in order (vLLM's per-request "detailed" metrics). Steps in
    which the drafter proposed nothing are not in it."""

    accepted: tuple[int, ...]
    drafted: tuple[int, ...]
    source: str


# The runner watches each request while it runs (its no-token timeout; what had streamed when it
# failed): a StreamResult made inside a watched request registers itself here, so engines need
# do nothing for it.
WATCHED_STREAMS: ContextVar[list[StreamResult] | None] = ContextVar("speedbench_watched_streams", default=None)


@dataclass
class StreamResult:
    """One request's stream as the engine saw it."""

    request_id: str
    prompt_tokens: int
    t_submit: float
    chunks: list[Chunk] = field(default_factory=list)
    finish_reason: str | None = None
    spec: SpecCounts | None = None
    spec_raw: dict[str, Any] | None = None
    steps: StepRecord | None = None  # the engine's per-step record, where it gives one
    error: str | None = None

    def __post_init__(self) -> None:
        watched = WATCHED_STREAMS.get()
        if watched is not None:
            watched.append(self)

    @property
    def output_ids(self) -> list[int]:
        return [tok for chunk in self.chunks for tok in chunk.token_ids]

    @property
    def output_tokens(self) -> int:
        return sum(chunk.n_tokens for chunk in self.chunks)


@dataclass(frozen=True)
class EngineCapabilities:
    """What the installed engine can report, found by asking it (signatures, attributes), never by
    guessing from its version number. ``missing`` names each feature it lacks and what that costs."""

    counter_sources: tuple[str, ...] = ()  # e.g. ("vllm:per_request", "vllm:get_metrics")
    per_step_record: bool = False  # StreamResult.steps is filled
    ceiling: bool = False  # Engine.ceiling() runs the engine's own non-streaming path
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class CeilingRun:
    """The engine's own non-streaming path on a workload: what it delivers with no client in the way."""

    output_tokens: int
    wall_s: float
    requests: int
    path: str  # what ran, e.g. "vllm AsyncLLM, RequestOutputKind.FINAL_ONLY"
    cpu_s: float | None = None  # the benchmark process's CPU time during it (set by the caller)

    @property
    def tps(self) -> float:
        return self.output_tokens / self.wall_s if self.wall_s > 0 else float("nan")


class Engine(abc.ABC):
    """One serving stack. Instances are started once per session and driven from one event loop."""

    name: ClassVar[str]

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    @property
    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        """Stream one request; every chunk carries the perf_counter time it arrived."""

    async def counters(self) -> SpecCounts | None:
        """Cumulative SD counters since start, or None where the engine exposes none."""
        return None

    async def ceiling(self, prompts: Sequence[Sequence[int]], sampling: Sampling, concurrency: int) -> CeilingRun | None:
        """Run the prompts through the engine's own non-streaming path, at most ``concurrency`` at a
        time, and time it; None where the engine has no such path (``capabilities.ceiling``)."""
        return None

    @property
    def capabilities(self) -> EngineCapabilities:
        """Valid after ``start()``: what this engine, as installed, can report."""
        return EngineCapabilities()

    def describe(self) -> dict[str, Any]:
        """What the record says about the engine: name, version, capabilities and anything an
        engine wants a reader to know (e.g. why counters are unavailable). Secrets never go here."""
        caps = self.capabilities
        return {
            "engine": self.name,
            "engine_version": self.version,
            "counter_sources": list(caps.counter_sources),
            "per_step_record": caps.per_step_record,
            "ceiling": caps.ceiling,
            "missing": list(caps.missing),
        }
