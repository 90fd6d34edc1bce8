"""Harness cost: the fake engine (FakeEngine, synthetic: no model) emits one step to every stream at
once on a fixed grid (``grid``: a batching engine's step reaching the client at once) or each stream
paced from its own last chunk (``free``: a server's writes spread out), at ~20k and ~100k chunk
events/s over 512 and 2,048 streams; reported per
point: events/s achieved, p50/p99 lag of each chunk's stamp behind its emission, the loop-lag
monitor's p99 and the client's CPU, with the client in this process (``host``: how in-process
engines run), in one worker process and in N (``--speedbench-clients``, default one per core).
A benchmark: it reports, it asserts nothing about time. The logic lives in ``speedbench_plugin.load.harness``."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.harness


@pytest.mark.parametrize("clients", ["host", "1", "N"])
@pytest.mark.parametrize("emission", ["grid", "free"])
@pytest.mark.parametrize("events_per_s", [20_000, 100_000], ids=["20k", "100k"])
@pytest.mark.parametrize("streams", [512, 2048])
def test_harness_cost(ld_harness, streams, events_per_s, emission, clients):
    ld_harness.run(streams, events_per_s, clients, emission)
