"""Options of the regression gate, mirrored as ini settings like the suite's own options."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from speedbench_plugin.options import Option

MATCH_MODES = ("id", "drafter-method")
FLAGS = {"speedbench-compare-force"}

COMPARE_OPTIONS: tuple[Option, ...] = (
    Option(
        "speedbench-save-baseline",
        "write a baseline (results, per-request counts, fingerprint) to PATH; a bare NAME means "
        "results/baselines/NAME.json",
    ),
    Option(
        "speedbench-compare",
        "compare every case with a baseline (PATH, or NAME under results/baselines/); regressed cases fail",
    ),
    Option(
        "speedbench-compare-force",
        "judge throughput and latency even when hardware, model, drafter or concurrency differ",
        "false",
    ),
    Option(
        "speedbench-compare-match",
        "how cases are matched: id (the stable test id) or drafter-method (ignore the drafter's "
        "settings but not its method, to compare a changed drafter configuration)",
        "id",
    ),
    Option("speedbench-compare-alpha", "family-wise error rate per metric family (acceptance, speed)", "0.01"),
    Option(
        "speedbench-compare-al-threshold",
        "ABS,REL: an AL change counts when beyond max(ABS, REL x baseline AL)",
        "0.02,0.01",
    ),
    Option(
        "speedbench-compare-rate-threshold",
        "ABS,REL: an AR or per-position rate change counts when beyond max(ABS, REL x baseline)",
        "0.01,0.01",
    ),
    Option(
        "speedbench-compare-speed-threshold",
        "REL,CV_FACTOR: a throughput or latency change counts when beyond max(REL, CV_FACTOR x baseline CV)",
        "0.05,3",
    ),
    Option("speedbench-compare-min-rounds", "rounds both runs need before throughput and latency are judged", "6"),
    Option("speedbench-compare-resamples", "bootstrap resamples for the acceptance intervals", "5000"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("speedbench", "speedbench: speculative decoding benchmarks")
    for option in COMPARE_OPTIONS:
        if option.name in FLAGS:
            group.addoption(f"--{option.name}", action="store_true", dest=option.dest, default=None, help=option.help)
        else:
            group.addoption(f"--{option.name}", action="store", dest=option.dest, default=None, help=option.help)
        parser.addini(option.dest, option.help + " (ini)", type="string")


def get(config: pytest.Config, name: str) -> Any:
    """Command line, then ini, then default (as ``speedbench_plugin.options.get``)."""
    option = next(o for o in COMPARE_OPTIONS if o.name == name)
    value = config.getoption(option.dest)
    if value is None:
        ini = config.getini(option.dest)
        value = ini if ini else None
    return option.default if value is None else value


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise pytest.UsageError(f"--{name} {value!r}: use true or false")


def _number(value: Any, name: str, low: float = 0.0, high: float = float("inf")) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"--{name} {value!r}: not a number") from None
    if not low <= number <= high:
        raise pytest.UsageError(f"--{name} {value!r}: must be between {low} and {high}")
    return number


def _pair(value: Any, name: str) -> tuple[float, float]:
    parts = [p.strip() for p in str(value).split(",")]
    if len(parts) != 2:
        raise pytest.UsageError(f"--{name} {value!r}: expected two numbers A,B")
    return _number(parts[0], name), _number(parts[1], name)


@dataclass(frozen=True)
class Thresholds:
    alpha: float = 0.01
    al_abs: float = 0.02
    al_rel: float = 0.01
    rate_abs: float = 0.01
    rate_rel: float = 0.01
    speed_rel: float = 0.05
    cv_factor: float = 3.0
    min_rounds: int = 6
    resamples: int = 5000

    @property
    def confidence(self) -> float:
        """The displayed interval's level: 99% for the default alpha of 0.01."""
        return 1.0 - self.alpha


@dataclass(frozen=True)
class CompareSettings:
    save_baseline: str | None
    compare: str | None
    force: bool
    match: str
    thresholds: Thresholds

    @property
    def active(self) -> bool:
        return bool(self.save_baseline or self.compare)

    @classmethod
    def from_config(cls, config: pytest.Config) -> CompareSettings:
        match = str(get(config, "speedbench-compare-match")).strip().lower()
        if match not in MATCH_MODES:
            raise pytest.UsageError(f"--speedbench-compare-match {match!r}: use {' or '.join(MATCH_MODES)}")
        al_abs, al_rel = _pair(get(config, "speedbench-compare-al-threshold"), "speedbench-compare-al-threshold")
        rate_abs, rate_rel = _pair(get(config, "speedbench-compare-rate-threshold"), "speedbench-compare-rate-threshold")
        speed_rel, cv_factor = _pair(get(config, "speedbench-compare-speed-threshold"), "speedbench-compare-speed-threshold")
        min_rounds = _number(get(config, "speedbench-compare-min-rounds"), "speedbench-compare-min-rounds", 2, 10_000)
        resamples = _number(get(config, "speedbench-compare-resamples"), "speedbench-compare-resamples", 100, 1e7)
        thresholds = Thresholds(
            alpha=_number(get(config, "speedbench-compare-alpha"), "speedbench-compare-alpha", 1e-12, 0.5),
            al_abs=al_abs, al_rel=al_rel, rate_abs=rate_abs, rate_rel=rate_rel,
            speed_rel=speed_rel, cv_factor=cv_factor, min_rounds=int(min_rounds), resamples=int(resamples),
        )
        return cls(
            save_baseline=get(config, "speedbench-save-baseline") or None,
            compare=get(config, "speedbench-compare") or None,
            force=_flag(get(config, "speedbench-compare-force"), "speedbench-compare-force"),
            match=match,
            thresholds=thresholds,
        )
