"""SPEED-Bench throughput split: serving speed per input-length bucket, entropy tier, concurrency and
drafter; the SSSD profiling pass; and, in a second phase fed by the sweep's file, the run with each
emitted vLLM dynamic-SD table. The logic lives in ``speedbench_plugin.throughput``."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.throughput


def test_throughput(tp_case, tp_prompts, tp_bucket, tp_tier, sb_concurrency, tp_settings):
    tp_case.run(tp_prompts, tp_bucket, tp_tier, sb_concurrency, tp_settings.per_cell)


def test_step_profile(tp_profile):
    tp_profile.run()


def test_dynamic_table(tp_dynamic, tp_dynamic_entry, sb_concurrency):
    tp_dynamic.run(tp_dynamic_entry, sb_concurrency)
