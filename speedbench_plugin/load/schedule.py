"""Seeded arrival schedules: when each request of a round is sent, relative to the round's start.

Inter-arrival times are gamma distributed with shape ``burstiness`` and mean ``1 / rate`` (as
``vllm bench serve --burstiness``): shape 1 is a Poisson process, below 1 burstier, above 1 more
regular. The draws come from one seeded generator at unit rate and are then scaled to the rate, so
every rate of a sweep (and SD on and off at one rate) shares the same random pattern. A ramp-up
lets the rate grow linearly from zero to ``rate`` over ``ramp_up_s`` seconds (the unit-rate arrival
process is mapped through the inverse of the cumulative rate). The first request is sent at 0.

The pattern, its seed and the offsets it produced are recorded in each case's ``load`` section;
:meth:`ArrivalPattern.from_json` rebuilds the pattern and :func:`replay_offsets` returns the
recorded offsets, so a run can be replayed exactly even where NumPy's generator changed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

GENERATOR = "numpy.random.default_rng(seed) (PCG64): gamma(shape=burstiness, scale=1/burstiness) unit-rate gaps"
MAX_REQUESTS = 100_000  # a duration-bound schedule stops here (a typo in rate or duration, not a workload)


@dataclass(frozen=True)
class ArrivalPattern:
    rate: float  # requests per second; math.inf: every request at once
    burstiness: float = 1.0
    ramp_up_s: float | None = None
    duration_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"request rate must be positive, got {self.rate}")
        if not self.burstiness > 0:
            raise ValueError(f"burstiness must be positive, got {self.burstiness}")
        for name, value in (("ramp_up_s", self.ramp_up_s), ("duration_s", self.duration_s)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if math.isinf(self.rate) and (self.ramp_up_s or self.duration_s):
            raise ValueError("a ramp-up or a duration needs a finite request rate")

    @property
    def kind(self) -> str:
        if math.isinf(self.rate):
            return "all-at-once"
        return "poisson" if self.burstiness == 1 else "gamma"

    @property
    def label(self) -> str:
        """What the case key holds (short: it is part of the case's label in tables): two cases with the
        same label in one session ran the same schedule. The seed shows when it is not 0."""
        if math.isinf(self.rate):
            return "all-at-once"
        parts = [f"{self.rate:g}/s", self.kind]
        if self.kind == "gamma":
            parts.append(f"b={self.burstiness:g}")
        if self.ramp_up_s:
            parts.append(f"ramp={self.ramp_up_s:g}s")
        if self.duration_s:
            parts.append(f"for={self.duration_s:g}s")
        if self.seed:
            parts.append(f"seed={self.seed}")
        return " ".join(parts)

    def _time_of(self, operational: float) -> float:
        """Seconds from the start at which ``operational`` expected arrivals have happened."""
        if not self.ramp_up_s:
            return operational / self.rate
        ramp_arrivals = self.rate * self.ramp_up_s / 2  # arrivals expected during the linear ramp
        if operational <= ramp_arrivals:
            return math.sqrt(2 * self.ramp_up_s * operational / self.rate)
        return self.ramp_up_s + (operational - ramp_arrivals) / self.rate

    def offsets(self, count: int | None = None) -> list[float]:
        """Send times (seconds from the round's start): ``count`` of them, or, duration-bound, every
        arrival before ``duration_s``."""
        if count is None and not self.duration_s:
            raise ValueError("give a request count or a duration")
        if math.isinf(self.rate):
            return [0.0] * int(count or 0)
        import numpy as np

        rng = np.random.default_rng(self.seed)
        times: list[float] = [0.0]
        operational = 0.0
        limit = count if count is not None else MAX_REQUESTS
        while len(times) < limit:
            gaps = rng.gamma(shape=self.burstiness, scale=1.0 / self.burstiness, size=256)
            for gap in gaps:
                operational += float(gap)
                t = self._time_of(operational)
                if self.duration_s and t >= self.duration_s:
                    return times
                times.append(t)
                if len(times) >= limit:
                    break
        if self.duration_s and count is None:
            raise ValueError(f"more than {MAX_REQUESTS} requests in {self.duration_s:g} s at {self.rate:g} req/s")
        return times

    def to_json(self) -> dict[str, Any]:
        import numpy as np

        out: dict[str, Any] = asdict(self)
        out["rate"] = "inf" if math.isinf(self.rate) else self.rate
        out.update(kind=self.kind, label=self.label, generator=GENERATOR, numpy=np.__version__)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArrivalPattern:
        return cls(float(data["rate"]), float(data.get("burstiness", 1.0)), data.get("ramp_up_s"),
                   data.get("duration_s"), int(data.get("seed", 0)))


def replay_offsets(section: Mapping[str, Any]) -> list[float]:
    """The exact send times a case's ``load`` section recorded."""
    return [float(t) for t in section["schedule"]["offsets_s"]]
