"""The telemetry sampler: its own thread reads every source at a fixed interval for the whole case
(from before the first measured round to after the last), so nothing is read on the measured path.
Each round's figures are cut from the samples afterwards (:meth:`Sampler.window`): cumulative
counters interpolated at the round's start and end, gauges averaged over the samples inside it.

The sampler measures its own cost: the CPU time its thread spends reading (``time.thread_time``),
reported per round as a share of the round's wall time.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from speedbench_plugin import metrics as m
from speedbench_plugin.telemetry.sources import Nvml, ProcessTreeCpu, Rapl, Reading, Unavailable, visible_gpus


class Source(Protocol):
    name: str
    source: str

    def read(self) -> Reading: ...


@dataclass
class _Series:
    ts: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def open_sources(gpus: Sequence[str] | None = None, nvml: Any = None,
                 root_pid: int | None = None) -> tuple[list[Source], dict[str, str]]:
    """Every source that can be read here, and why each other one cannot. ``nvml``: an NVML module
    to use instead of ``pynvml`` (a stand-in in tests)."""
    sources: list[Source] = []
    missing: dict[str, str] = {}
    for name, make in (("cpu", lambda: ProcessTreeCpu(root_pid)), ("rapl", Rapl),
                       ("nvml", lambda: Nvml(gpus if gpus is not None else visible_gpus(), nvml))):
        try:
            sources.append(make())
        except Unavailable as exc:
            missing[name] = str(exc)
    return sources, missing


class Sampler:
    """Samples ``sources`` every ``interval_s`` on a daemon thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, sources: Sequence[Source], missing: dict[str, str], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"telemetry interval {interval_s!r}: must be above 0 s")
        self.sources = list(sources)
        self.missing = dict(missing)
        self.interval_s = interval_s
        self._series: dict[str, _Series] = {}
        self._kinds: dict[str, str] = {}  # key -> "counter" or "gauge"
        self._costs: list[tuple[float, float]] = []  # (sample time, thread CPU seconds the reading took)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speedbench-telemetry", daemon=True)
        self._failed: dict[str, str] = {}

    def start(self) -> Sampler:
        self._sample()  # one sample before the first round, so its start is bracketed
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=max(5.0, 10 * self.interval_s))
        self._sample()  # and one after the last round
        for source in self.sources:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        # One time stamp per sample (the readings take microseconds): every series and the cost share it.
        t, cpu0 = time.perf_counter(), time.thread_time()
        for source in self.sources:
            if source.name in self._failed:
                continue
            try:
                reading = source.read()
            except Exception as exc:  # noqa: BLE001 - a source that fails mid-run is named, the others go on
                self._failed[source.name] = f"reading failed mid-run: {type(exc).__name__}: {exc}"
                continue
            for kind, values in (("counter", reading.counters), ("gauge", reading.gauges)):
                for key, value in values.items():
                    series = self._series.setdefault(f"{source.name}.{key}", _Series())
                    self._kinds[f"{source.name}.{key}"] = kind
                    series.ts.append(t)
                    series.values.append(value)
        self._costs.append((t, time.thread_time() - cpu0))

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """One round's telemetry, JSON-able: per source its raw figures over ``[t0, t1]`` and where
        they came from; ``missing`` names every source that gave nothing, and why."""
        wall = t1 - t0
        cost = sum(c for t, c in self._costs if t0 <= t <= t1)
        out: dict[str, Any] = {
            "interval_s": self.interval_s,
            "samples": sum(1 for t, _ in self._costs if t0 <= t <= t1),
            "sampler_cpu_s": cost,
            "sampler_share": m.ratio(cost, wall),
            "sources": {s.name: s.source for s in self.sources if s.name not in self._failed},
            "missing": {**self.missing, **self._failed},
        }
        figures: dict[str, float] = {}
        for key, series in self._series.items():
            if self._kinds[key] == "counter":
                figures[key] = m.counter_delta(series.ts, series.values, t0, t1)
                continue
            inside = m.window_values(series.ts, series.values, t0, t1)
            figures[f"{key}.mean"] = m.mean(inside)
            figures[f"{key}.peak"] = max(inside) if inside else math.nan
            if key.endswith(".power_w") and f"{key[:-len('power_w')]}energy_j" not in self._kinds:
                figures[key[:-len("power_w")] + "energy_j"] = m.integrate(series.ts, series.values, t0, t1)
        out["figures"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in sorted(figures.items())}
        return out


def start_sampler(interval_s: float | None, gpus: Sequence[str] | None = None) -> Sampler | None:
    """A started sampler over every source there is; None when telemetry is off (interval None)."""
    if not interval_s:
        return None
    sources, missing = open_sources(gpus)
    return Sampler(sources, missing, interval_s).start()
