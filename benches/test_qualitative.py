"""SPEED-Bench qualitative split: draft quality (AL, AR, CAR) per category and drafter."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.qualitative


def test_qualitative(sb_case, sb_engine, sb_category, sb_concurrency, sb_questions):
    items = sb_questions.get(sb_category, [])
    if not items:
        pytest.skip(f"no prompts for category {sb_category!r} in this dataset")
    sb_case.run(items, split="qualitative", labels={"category": sb_category}, concurrency=sb_concurrency)
