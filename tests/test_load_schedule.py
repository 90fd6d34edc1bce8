"""Arrival schedules and SLO parsing: seeded, shaped as asked, recorded and replayable."""
from __future__ import annotations

import itertools
import math
import statistics

import pytest

from speedbench_plugin.load.schedule import ArrivalPattern, replay_offsets
from speedbench_plugin.load.slo import parse_slo


def _gaps(offsets: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(offsets)]


def test_poisson_is_seeded_starts_at_zero_and_has_the_asked_mean_gap():
    offsets = ArrivalPattern(4.0, seed=7).offsets(20_000)
    assert offsets[0] == 0.0 and len(offsets) == 20_000
    assert offsets == ArrivalPattern(4.0, seed=7).offsets(20_000)
    assert offsets != ArrivalPattern(4.0, seed=8).offsets(20_000)
    gaps = _gaps(offsets)
    assert statistics.mean(gaps) == pytest.approx(0.25, rel=0.03)
    # exponential gaps: coefficient of variation 1
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_burstiness_is_the_gamma_shape(burstiness):
    gaps = _gaps(ArrivalPattern(2.0, burstiness=burstiness, seed=1).offsets(20_000))
    assert statistics.mean(gaps) == pytest.approx(0.5, rel=0.05)
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1 / math.sqrt(burstiness), rel=0.07)


def test_rates_of_a_sweep_share_one_random_pattern():
    slow, fast = ArrivalPattern(1.0, seed=3).offsets(50), ArrivalPattern(4.0, seed=3).offsets(50)
    assert fast == pytest.approx([t / 4 for t in slow])


def test_ramp_up_rises_linearly_to_the_rate():
    pattern = ArrivalPattern(50.0, ramp_up_s=20.0, duration_s=60.0, seed=2)
    offsets = pattern.offsets()
    during = [t for t in offsets if t < 20.0]
    after = [t for t in offsets if t >= 20.0]
    # expected 50 * 20 / 2 = 500 arrivals during the ramp, 2000 in the 40 s after it
    assert len(during) == pytest.approx(500, rel=0.1) and len(after) == pytest.approx(2000, rel=0.06)
    early = [t for t in during if t < 10.0]
    assert len(early) == pytest.approx(125, rel=0.2)  # a quarter of the ramp's arrivals in its first half
    assert statistics.mean(_gaps(after)) == pytest.approx(0.02, rel=0.06)


def test_duration_bound_sends_what_the_schedule_puts_before_the_end():
    offsets = ArrivalPattern(5.0, duration_s=40.0, seed=0).offsets()
    assert max(offsets) < 40.0 and len(offsets) == pytest.approx(200, rel=0.15)
    # a count and a duration: whichever ends first
    assert len(ArrivalPattern(5.0, duration_s=40.0).offsets(10)) == 10


def test_all_at_once_and_bad_patterns():
    assert ArrivalPattern(math.inf).offsets(5) == [0.0] * 5
    assert ArrivalPattern(math.inf).label == "all-at-once"
    for bad in ({"rate": 0.0}, {"rate": -1.0}, {"rate": 1.0, "burstiness": 0.0}, {"rate": 1.0, "duration_s": 0.0},
                {"rate": math.inf, "duration_s": 5.0}, {"rate": math.inf, "ramp_up_s": 5.0}):
        with pytest.raises(ValueError):
            ArrivalPattern(**bad)
    with pytest.raises(ValueError, match="count or a duration"):
        ArrivalPattern(1.0).offsets()


def test_recorded_pattern_replays_exactly():
    pattern = ArrivalPattern(2.5, burstiness=0.5, ramp_up_s=3.0, seed=11)
    recorded = pattern.to_json()
    assert recorded["kind"] == "gamma" and recorded["numpy"] and recorded["label"] == "2.5/s gamma b=0.5 ramp=3s seed=11"
    assert ArrivalPattern.from_json(recorded) == pattern
    assert ArrivalPattern.from_json(recorded).offsets(30) == pattern.offsets(30)
    section = {"schedule": {"pattern": recorded, "offsets_s": pattern.offsets(30)}}
    assert replay_offsets(section) == pattern.offsets(30)


def test_slo_parsing():
    assert parse_slo("ttft=0.5, tpot=0.05,e2el=10", "speedbench-slo") == {"ttft": 0.5, "tpot": 0.05, "e2el": 10.0}
    assert parse_slo("TTFT=1", "speedbench-slo") == {"ttft": 1.0}
    assert parse_slo(None, "speedbench-slo") is None and parse_slo({"e2el": 3}, "speedbench-slo") == {"e2el": 3.0}
    for raw, message in (("itl=0.1", "unknown SLO 'itl'"), ("ttft=0", "positive"), ("ttft=-1", "positive"),
                         ("ttft", "expected KEY=SECONDS"), ("ttft=fast", "not a number"), ("ttft=1,ttft=2", "twice")):
        with pytest.raises(pytest.UsageError, match=message) as info:
            parse_slo(raw, "speedbench-slo")
        assert "--speedbench-slo" in str(info.value)
