"""Cross-engine check (``--speedbench-cross-engine NAME``): the same token ids through the session
engine and a second one; see ``speedbench_plugin.cross_engine``."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.qualitative


def test_cross_engine(sb_cross_engine, sb_questions):
    sb_cross_engine.run(sb_questions)
