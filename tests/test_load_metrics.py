"""The load figures in metrics.py: SLOs, crossovers, sustainable rates, the SmartSpec latency model."""
from __future__ import annotations

import math

import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.engines.base import Chunk, StreamResult


def test_meets_slo():
    ok = {"ttft": 0.2, "tpot": 0.01, "e2el": 1.0}
    assert m.meets_slo(ok, {"ttft": 0.5, "tpot": 0.05}, failed=False)
    assert not m.meets_slo(ok, {"ttft": 0.1}, failed=False)
    assert not m.meets_slo(ok, {"e2el": 0.5}, failed=False)
    assert not m.meets_slo(ok, {"ttft": 0.5}, failed=True)
    one_token = {"ttft": 0.2, "tpot": math.nan, "e2el": 0.2}  # no decode: TPOT not judged
    assert m.meets_slo(one_token, {"tpot": 0.01}, failed=False)
    assert not m.meets_slo({"ttft": math.nan, "tpot": math.nan, "e2el": math.nan}, {"tpot": 0.01}, failed=False)


def test_e2e_latency_and_send_error():
    stream = StreamResult("r", 3, 10.0, [Chunk(10.5, (1,)), Chunk(11.25, (2, 3))])
    assert m.e2e_latency(stream) == pytest.approx(1.25)
    assert math.isnan(m.e2e_latency(StreamResult("r", 3, 10.0)))
    assert m.send_error(5.0, 5.002) == pytest.approx(0.002) and math.isnan(m.send_error(None, 1.0))


def test_crossing():
    rates = [0.5, 1.0, 2.0, 4.0]
    assert m.crossing(rates, [-2.0, -1.0, 1.0, 3.0]) == (1.5, "between")
    assert m.crossing(rates, [1.0, 2.0, 3.0, 4.0]) == (0.5, "below-range")
    assert m.crossing(rates, [-1.0, -1.0, -0.5, -0.1]) == (4.0, "not-reached")
    assert m.crossing([1.0], [1.0])[1] == "undefined"
    # unsorted input and an infinite rate (all at once) are handled
    assert m.crossing([4.0, math.inf, 1.0, 2.0], [3.0, 9.0, -1.0, 1.0]) == (1.5, "between")


def test_highest_rate_meeting():
    rates = [0.5, 1.0, 2.0, 4.0]
    assert m.highest_rate_meeting(rates, [1.0, 0.95, 0.7, 0.2], 0.9) == (pytest.approx(1.0 + 0.05 / 0.25), "between")
    assert m.highest_rate_meeting(rates, [1.0, 1.0, 0.95, 0.9], 0.9) == (4.0, "at-least")
    assert m.highest_rate_meeting(rates, [0.5, 0.2, 0.1, 0.0], 0.9) == (0.5, "below-range")
    # the first miss ends the walk: a noisy recovery above it does not count
    assert m.highest_rate_meeting(rates, [1.0, 0.8, 1.0, 1.0], 0.9)[0] == pytest.approx(0.5 + 0.5 * 0.1 / 0.2)


def test_bounded_ratio():
    assert m.bounded_ratio((2.0, "between"), (1.0, "between")) == (2.0, "exact")
    assert m.bounded_ratio((4.0, "at-least"), (1.0, "between")) == (4.0, "at-least")
    assert m.bounded_ratio((1.0, "between"), (4.0, "at-least")) == (0.25, "at-most")
    assert m.bounded_ratio((4.0, "at-least"), (4.0, "at-least"))[1] == "undefined"


def test_queue_growth():
    assert m.queue_growth([0.1, 0.1, 0.1, 0.5, 0.5, 0.5]) == pytest.approx(5.0)
    assert m.queue_growth([0.2] * 9) == pytest.approx(1.0)
    assert math.isnan(m.queue_growth([0.1, 0.2]))


def test_decode_latency_model_obeys_littles_law():
    plain = m.DecodeLatencyModel.of(0.001, 0.0, 0.02, acceptance_length=1.0, drafted_per_step=0.0,
                                    output_tokens=65, context_per_request=1000)
    sd = m.DecodeLatencyModel.of(0.001, 0.0, 0.02, acceptance_length=2.0, drafted_per_step=3.0,
                                 output_tokens=65, context_per_request=1000)
    assert plain.latency(0.0) == pytest.approx(64 * 0.02)  # one request alone: 64 steps of the fixed time
    for model in (plain, sd):
        for rate in (0.5, 2.0, 5.0):
            latency = model.latency(rate)
            if math.isinf(latency):
                continue
            concurrency = rate * latency  # Little's law
            steps = 64 / (2.0 if model is sd else 1.0)
            step_s = 0.001 * concurrency * (4.0 if model is sd else 1.0) + 0.02
            assert latency == pytest.approx(steps * step_s)
    assert sd.latency(0.1) < plain.latency(0.1)  # SD pays at low load ...
    rate = m.predicted_crossover(sd, plain)
    assert 0 < rate < min(sd.saturation_rate, plain.saturation_rate)
    assert sd.latency(rate) == pytest.approx(plain.latency(rate))
    assert sd.latency(rate * 1.2) > plain.latency(rate * 1.2)  # ... and stops paying above the crossover
    assert math.isinf(plain.latency(plain.saturation_rate * 1.01))


def test_stamp_lags():
    # emitted on a 10 ms grid: chunk at 0.013 is 3 ms late, the next due at 0.02 arrives at 0.021
    stream = StreamResult("r", 1, 0.0005, [Chunk(0.013, (1,)), Chunk(0.021, (2,))])
    assert m.grid_stamp_lags(stream, 0.01) == pytest.approx([0.003, 0.001])
    free = StreamResult("r", 1, 0.0, [Chunk(0.012, (1,)), Chunk(0.0225, (2,))])
    assert m.free_stamp_lags(free, 0.01) == pytest.approx([0.002, 0.0005])
