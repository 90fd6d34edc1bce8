"""Throughput analysis: concurrency sweeps, draft-length choice (SmartSpec goodput model, SSSD knee,
vLLM dynamic-SD table), Pareto plots and the sweep report (docs/guides/throughput.md)."""
from __future__ import annotations
