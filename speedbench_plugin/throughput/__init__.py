"""Throughput analysis: concurrency sweeps, draft-length choice (SmartSpec goodput model, SSSD knee,
vLLM dynamic-SD table), Pareto plots and the sweep report. See REFERENCE §1–§3 and issue 5."""
from __future__ import annotations
