"""The load plugin's options (as data), read and checked once per session."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from speedbench_plugin import options as o
from speedbench_plugin.load.clients import LOOPS
from speedbench_plugin.load.schedule import ArrivalPattern
from speedbench_plugin.load.slo import parse_slo


def _rates(raw: Any, name: str) -> tuple[float, ...]:
    """``"0.5,1,2,inf"`` -> (0.5, 1.0, 2.0, inf): positive requests per second, duplicates dropped."""
    values: list[float] = []
    for item in o._items(raw):
        try:
            value = float(str(item).strip())
        except ValueError:
            raise pytest.UsageError(f"--{name} {item!r}: not a number of requests per second (or inf)") from None
        if math.isnan(value) or value <= 0:
            raise pytest.UsageError(f"--{name} {item!r}: a request rate must be positive (requests per second, or inf)")
        if value not in values:
            values.append(value)
    if not values:
        raise pytest.UsageError(f"--{name}: give at least one request rate")
    return tuple(values)


def _positive(raw: Any, name: str) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise pytest.UsageError(f"--{name} {raw!r}: not a number") from None
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise pytest.UsageError(f"--{name} {raw!r}: must be a positive number")
    return value


def _optional_positive(raw: Any, name: str) -> float | None:
    return None if raw is None or str(raw).strip() == "" else _positive(raw, name)


def _share(raw: Any, name: str) -> float:
    value = _positive(raw, name)
    if value > 1:
        raise pytest.UsageError(f"--{name} {raw!r}: a share, between 0 (excluded) and 1")
    return value


def _seed(raw: Any, name: str) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise pytest.UsageError(f"--{name} {raw!r}: not a non-negative integer") from None
    if value < 0:
        raise pytest.UsageError(f"--{name} {raw!r}: not a non-negative integer")
    return value


REQUEST_RATE = o.Option("speedbench-request-rate",
                        "load bench: open-loop request rate in requests/s; a comma list sweeps; inf = every request at once",
                        "1", kind=_rates)
BURSTINESS = o.Option("speedbench-burstiness", "gamma shape of the inter-arrival times: 1 = Poisson, < 1 burstier, > 1 "
                      "more regular", "1", kind=_positive)
RAMP_UP = o.Option("speedbench-ramp-up", "seconds over which the request rate rises linearly from 0 to its target",
                   kind=_optional_positive)
DURATION = o.Option("speedbench-duration", "seconds of arrivals per round (duration-bound: the schedule decides how many "
                    "requests); default: --speedbench-num-requests requests", kind=_optional_positive)
LOAD_SEED = o.Option("speedbench-load-seed", "seed of the arrival schedule (recorded with the offsets it gave)", "0",
                     kind=_seed)
SLO = o.Option("speedbench-slo", "SLOs in seconds, any subset: ttft=0.5,tpot=0.05,e2el=10", kind=parse_slo)
SLO_TARGET = o.Option("speedbench-slo-attainment", "SLO attainment the highest sustainable rate must keep", "0.9",
                      kind=_share)
CLIENTS = o.Option("speedbench-clients", "client processes sharing the load (engines reached over HTTP: openai)", "1",
                   kind=o.positive_int)
CLIENT_LOOP = o.Option("speedbench-client-loop", "event loop of the client worker processes: auto (uvloop where "
                       "installed), asyncio or uvloop", "auto", kind=o.choice(*LOOPS))
SEND_ERROR = o.Option("speedbench-client-bound-send-error",
                      "flag a case client-bound when its p99 send-time error against the schedule passes this (seconds)",
                      "0.01", kind=_positive)
LOOP_LAG = o.Option("speedbench-client-bound-loop-lag",
                    "flag a case client-bound when its p99 event-loop lag passes this (seconds)", "0.01", kind=_positive)
LOOP_CPU = o.Option("speedbench-client-bound-cpu",
                    "flag a case client-bound when a client event loop keeps more than this share of a core busy",
                    "0.9", kind=_share)

OPTIONS = (REQUEST_RATE, BURSTINESS, RAMP_UP, DURATION, LOAD_SEED, SLO, SLO_TARGET, CLIENTS, CLIENT_LOOP, SEND_ERROR,
           LOOP_LAG, LOOP_CPU)


@dataclass(frozen=True)
class SelfCheckPolicy:
    """When the load generator, not the engine, set the pace."""

    send_error_s: float = 0.01
    loop_lag_s: float = 0.01
    loop_cpu: float = 0.9


@dataclass(frozen=True)
class LoadSettings:
    rates: tuple[float, ...]
    burstiness: float = 1.0
    ramp_up_s: float | None = None
    duration_s: float | None = None
    seed: int = 0
    slo: dict[str, float] | None = None
    slo_target: float = 0.9
    clients: int = 1
    client_loop: str = "auto"
    policy: SelfCheckPolicy = SelfCheckPolicy()
    client_limit_reason: str = ""  # why the engine takes one client process, or how it takes several

    def pattern(self, rate: float) -> ArrivalPattern:
        return ArrivalPattern(rate, self.burstiness, self.ramp_up_s, self.duration_s, self.seed)

    @classmethod
    def from_config(cls, config: pytest.Config, engine: str) -> LoadSettings:
        from speedbench_plugin.load.selfcheck import client_processes

        def get(option: o.Option) -> Any:
            return o.value(config, option)

        rates = get(REQUEST_RATE)
        ramp, duration = get(RAMP_UP), get(DURATION)
        if math.inf in rates and (ramp or duration):
            which = f"--{RAMP_UP.name}" if ramp else f"--{DURATION.name}"
            raise pytest.UsageError(f"--{REQUEST_RATE.name} inf sends every request at once: {which} needs finite rates")
        clients = get(CLIENTS)
        try:
            from speedbench_plugin.engines import UnknownEngine, engine_class

            engine_cls: type | None = engine_class(engine)
        except UnknownEngine:
            engine_cls = None  # the lead plugin reports it
        limit, reason = client_processes(engine, engine_cls)
        if limit is not None and clients > limit:
            raise pytest.UsageError(f"--{CLIENTS.name} {clients}: engine {engine} takes at most {limit} client "
                                    f"process{'es' if limit > 1 else ''}: {reason}")
        return cls(rates=rates, burstiness=get(BURSTINESS), ramp_up_s=ramp, duration_s=duration, seed=get(LOAD_SEED),
                   slo=get(SLO), slo_target=get(SLO_TARGET), clients=clients, client_loop=get(CLIENT_LOOP),
                   policy=SelfCheckPolicy(get(SEND_ERROR), get(LOOP_LAG), get(LOOP_CPU)), client_limit_reason=reason)


# Kept here, not in the plugin module, so that the harness and the report read them without
# importing a pytest plugin.
LOAD_SETTINGS_KEY = pytest.StashKey[LoadSettings]()
HARNESS_PROPERTY = "speedbench_harness"  # user property that carries a harness run's result


def load_settings(config: pytest.Config) -> LoadSettings:
    return config.stash[LOAD_SETTINGS_KEY]
