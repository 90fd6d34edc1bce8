"""The regression gate: save a baseline, compare a run with it, fail exactly the regressed cases."""
from __future__ import annotations
