"""The telemetry option, read by the lead plugin's options and by a case (outside any plugin module)."""
from __future__ import annotations

from typing import Any

import pytest

from speedbench_plugin import options as o


def _interval(raw: Any, name: str) -> float | None:
    value = float(o.number(0.0, 60.0)(raw, name))
    return value or None


TELEMETRY_INTERVAL = o.Option(
    "speedbench-telemetry-interval",
    "seconds between telemetry samples (CPU seconds of the engine's processes, RAPL, NVML) taken on their own thread "
    "during measured rounds; 0 turns telemetry off",
    "0.2", kind=_interval, preset_key="telemetry_interval",
)
OPTIONS = (TELEMETRY_INTERVAL,)


def interval(config: pytest.Config) -> float | None:
    """The sampling interval in seconds, None when telemetry is off."""
    value: float | None = o.value(config, TELEMETRY_INTERVAL)
    return value
