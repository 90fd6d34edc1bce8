"""Options of the regression gate, declared as data like the suite's own options."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from speedbench_plugin import options as o

MATCH_MODES = ("id", "drafter-method")

SAVE = o.Option("speedbench-save-baseline",
                "write a baseline (results, per-request counts, fingerprint) to PATH; a bare NAME means "
                "results/baselines/NAME.json")
COMPARE = o.Option("speedbench-compare",
                   "compare every case with a baseline (PATH, or NAME under results/baselines/); regressed cases fail")
FORCE = o.Option("speedbench-compare-force",
                 "judge throughput and latency even when hardware, model, drafter or concurrency differ",
                 "false", kind=o.flag, is_flag=True)
STRICT = o.Option("speedbench-compare-strict",
                  "exit non-zero when the comparison judged nothing (every case not comparable): a CI gate must "
                  "not pass on nothing", "false", kind=o.flag, is_flag=True)
MATCH = o.Option("speedbench-compare-match",
                 "how cases are matched: id (the stable test id) or drafter-method (ignore the drafter's settings "
                 "but not its method, to compare a changed drafter configuration)", "id", kind=o.choice(*MATCH_MODES))
ALPHA = o.Option("speedbench-compare-alpha", "family-wise error rate per metric family (acceptance, speed)", "0.01",
                 kind=o.number(1e-12, 0.5))
AL_THRESHOLD = o.Option("speedbench-compare-al-threshold",
                        "ABS,REL: an AL change counts when beyond max(ABS, REL x baseline AL)", "0.02,0.01",
                        kind=o.number_pair)
RATE_THRESHOLD = o.Option("speedbench-compare-rate-threshold",
                          "ABS,REL: an AR or per-position rate change counts when beyond max(ABS, REL x baseline)",
                          "0.01,0.01", kind=o.number_pair)
SPEED_THRESHOLD = o.Option("speedbench-compare-speed-threshold",
                           "REL,CV_FACTOR: a throughput or latency change counts when beyond max(REL, CV_FACTOR x "
                           "baseline CV)", "0.05,3", kind=o.number_pair)
MIN_ROUNDS = o.Option("speedbench-compare-min-rounds", "rounds both runs need before throughput and latency are judged",
                      "6", kind=o.positive_int)
MIN_PAIRS = o.Option("speedbench-compare-min-pairs", "paired requests a case needs before its acceptance is judged",
                     "5", kind=o.positive_int)
COST = o.Option("speedbench-compare-cost",
                "also judge the CPU seconds per output token (from the record's cost section; lower is better); "
                "a side without that figure is not judged", "false", kind=o.flag, is_flag=True)
RESAMPLES = o.Option("speedbench-compare-resamples", "bootstrap resamples for the acceptance intervals", "5000",
                     kind=o.positive_int)

OPTIONS = (SAVE, COMPARE, FORCE, STRICT, MATCH, ALPHA, AL_THRESHOLD, RATE_THRESHOLD, SPEED_THRESHOLD, MIN_ROUNDS,
           MIN_PAIRS, RESAMPLES, COST)


def add_options(parser: pytest.Parser) -> None:
    o.add_options(parser, OPTIONS)


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
    min_pairs: int = 5
    resamples: int = 5000
    cost: bool = False  # also judge the CPU seconds per output token (--speedbench-compare-cost)

    @property
    def confidence(self) -> float:
        """The displayed interval's level: 99% for the default alpha of 0.01."""
        return 1.0 - self.alpha


@dataclass(frozen=True)
class CompareSettings:
    save_baseline: str | None
    compare: str | None
    force: bool
    strict: bool
    match: str
    thresholds: Thresholds

    @property
    def active(self) -> bool:
        return bool(self.save_baseline or self.compare)

    @classmethod
    def from_config(cls, config: pytest.Config) -> CompareSettings:
        al_abs, al_rel = o.value(config, AL_THRESHOLD)
        rate_abs, rate_rel = o.value(config, RATE_THRESHOLD)
        speed_rel, cv_factor = o.value(config, SPEED_THRESHOLD)
        min_rounds = o.value(config, MIN_ROUNDS)
        if min_rounds < 2:
            raise pytest.UsageError(f"--{MIN_ROUNDS.name} {min_rounds}: at least 2 rounds are needed to compare")
        resamples = o.value(config, RESAMPLES)
        if resamples < 100:
            raise pytest.UsageError(f"--{RESAMPLES.name} {resamples}: use at least 100 resamples")
        thresholds = Thresholds(
            alpha=o.value(config, ALPHA), al_abs=al_abs, al_rel=al_rel, rate_abs=rate_abs, rate_rel=rate_rel,
            speed_rel=speed_rel, cv_factor=cv_factor, min_rounds=min_rounds, min_pairs=o.value(config, MIN_PAIRS),
            resamples=resamples, cost=o.value(config, COST),
        )
        return cls(
            save_baseline=o.value(config, SAVE) or None,
            compare=o.value(config, COMPARE) or None,
            force=o.value(config, FORCE),
            strict=o.value(config, STRICT),
            match=o.value(config, MATCH),
            thresholds=thresholds,
        )
