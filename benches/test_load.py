"""Serving load as real traffic: the throughput split's prompts sent open loop at each
``--speedbench-request-rate`` (Poisson or gamma bursts, seeded), per drafter; SLO attainment and
goodput per case, and across the rates the crossover where SD stops paying and the highest
sustainable rate. The logic lives in ``speedbench_plugin.load``."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.load


def test_load(ld_case, tp_bucket, tp_tier, ld_rate, ld_concurrency_cap, tp_settings):
    ld_case.run(tp_bucket, tp_tier, ld_rate, ld_concurrency_cap, tp_settings.per_cell)
