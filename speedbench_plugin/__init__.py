"""speedbench: SPEED-Bench methodology as a pytest plugin for speculative decoding."""
from __future__ import annotations

__version__ = "0.1.0"
