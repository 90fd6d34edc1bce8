"""SPEED-Bench qualitative split: draft quality (AL, AR, CAR) per category and drafter."""
from __future__ import annotations

import pytest

from speedbench_plugin.data import no_prompts_reason

pytestmark = pytest.mark.qualitative


def test_qualitative(sb_case, sb_engine, sb_category, sb_concurrency, sb_questions, sb_settings):
    items = sb_questions.get(sb_category, [])
    if not items:
        pytest.skip(no_prompts_reason(sb_category, sb_settings.dataset))
    sb_case.run(items, split="qualitative", labels={"category": sb_category}, concurrency=sb_concurrency)
