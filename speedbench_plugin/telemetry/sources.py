"""Where energy and load figures come from: the engine's process tree (psutil), the CPU package's
RAPL counters (``/sys/class/powercap``) and NVIDIA GPUs (NVML through ``nvidia-ml-py``).

Each source reads *raw* values only (a cumulative counter or an instantaneous reading); the sampler
cuts them into measured rounds and :mod:`speedbench_plugin.metrics` turns them into figures. A
source that is not there says why (:class:`Unavailable`), and the record names it: nothing is
filled in.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

POWERCAP = Path("/sys/class/powercap")
TREE_REFRESH_S = 2.0  # how often the engine's process tree is looked up again (its processes are long-lived)


class Unavailable(Exception):
    """A telemetry source that cannot be read here; the message says why."""


@dataclass(frozen=True)
class Reading:
    """One source's values at one instant. ``counters`` are cumulative (they only grow): CPU
    seconds, joules. ``gauges`` are instantaneous: watts, utilisation, bytes, MHz."""

    counters: dict[str, float]
    gauges: dict[str, float]


class ProcessTreeCpu:
    """CPU seconds (user + system) of a process and all its descendants.

    A process seen once keeps its last value after it exits, so the sum never goes back; a process
    that starts and ends between two samples is missed (vLLM's engine processes live for the
    session)."""

    name = "cpu"

    def __init__(self, root_pid: int | None = None) -> None:
        try:
            import psutil
        except ImportError:
            raise Unavailable("psutil is not installed") from None
        self._psutil = psutil
        self.root_pid = root_pid or os.getpid()
        try:
            self._root = psutil.Process(self.root_pid)
        except psutil.Error as exc:
            raise Unavailable(f"process {self.root_pid}: {exc}") from None
        self._seen: dict[int, float] = {}
        self._tree: list[Any] = []
        self._tree_read = -math.inf
        self.source = f"psutil: CPU seconds of process {self.root_pid} and its descendants (the engine's process tree)"

    def read(self) -> Reading:
        psutil = self._psutil
        now = time.monotonic()
        if now - self._tree_read >= TREE_REFRESH_S:
            # Finding descendants scans every process on the machine: done every few seconds, while
            # reading a known process's times is one small file per process.
            self._tree, self._tree_read = [self._root], now
            with contextlib.suppress(psutil.Error):
                self._tree += self._root.children(recursive=True)
        processes = self._tree
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                self._seen[process.pid] = times.user + times.system
        return Reading({"cpu_s": sum(self._seen.values())}, {"processes": float(len(processes))})


class Rapl:
    """Package energy from the kernel's RAPL counters (``intel-rapl:N/energy_uj``), wraps undone."""

    name = "rapl"

    def __init__(self, root: Path = POWERCAP) -> None:
        if not root.is_dir():
            raise Unavailable(f"{root} does not exist (the kernel exposes no RAPL powercap interface here)")
        self.domains: list[tuple[Path, float]] = []
        for domain in sorted(root.glob("intel-rapl:*")):
            if domain.name.count(":") != 1:  # intel-rapl:0:0 etc. are sub-domains of a package
                continue
            try:
                span = float((domain / "max_energy_range_uj").read_text())
                (domain / "energy_uj").read_text()
            except OSError as exc:
                raise Unavailable(f"{domain / 'energy_uj'}: {exc.strerror or exc} (reading RAPL needs root on "
                                  "recent kernels)") from None
            self.domains.append((domain, span))
        if not self.domains:
            raise Unavailable(f"{root} lists no intel-rapl package domain")
        self._last: list[float | None] = [None] * len(self.domains)
        self._total = [0.0] * len(self.domains)
        self.source = f"RAPL: {', '.join(d.name for d, _ in self.domains)} energy_uj ({root})"

    def read(self) -> Reading:
        for i, (domain, span) in enumerate(self.domains):
            value = float((domain / "energy_uj").read_text())
            last = self._last[i]
            if last is not None:
                self._total[i] += value - last if value >= last else value + span - last  # the counter wrapped
            self._last[i] = value
        return Reading({"energy_j": sum(self._total) / 1e6}, {})


def import_nvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise Unavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
    module: ModuleType = pynvml
    return module


class Nvml:
    """Per GPU the engine uses: the total-energy counter where the GPU has one (Volta and later),
    else power readings the sampler integrates; power, SM utilisation, memory used, clocks."""

    name = "nvml"

    def __init__(self, devices: Sequence[str] | None = None, nvml: ModuleType | None = None) -> None:
        self.nvml = nvml or import_nvml()
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as exc:
            raise Unavailable(f"NVML did not initialise: {exc}") from None
        try:
            ids = list(devices) if devices else [str(i) for i in range(self.nvml.nvmlDeviceGetCount())]
            self.handles = [(device, self._handle(device)) for device in ids]
        except self.nvml.NVMLError as exc:
            raise Unavailable(f"NVML: {exc}") from None
        if not self.handles:
            raise Unavailable("NVML sees no GPU")
        self.has_energy = {device: self._energy_counter(handle) for device, handle in self.handles}
        self.names = {device: _text(self.nvml.nvmlDeviceGetName(handle)) for device, handle in self.handles}
        how = ", ".join(f"GPU {d} ({self.names[d]}): {'total-energy counter' if self.has_energy[d] else 'power integrated'}"
                        for d, _ in self.handles)
        self.source = f"NVML: {how}"

    def _handle(self, device: str) -> Any:
        if device.isdigit():
            return self.nvml.nvmlDeviceGetHandleByIndex(int(device))
        return self.nvml.nvmlDeviceGetHandleByUUID(device)

    def _energy_counter(self, handle: Any) -> bool:
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except self.nvml.NVMLError:
            return False
        return True

    def read(self) -> Reading:
        nvml = self.nvml
        counters: dict[str, float] = {}
        gauges: dict[str, float] = {}
        for device, handle in self.handles:
            key = f"gpu{device}"
            if self.has_energy[device]:
                counters[f"{key}.energy_j"] = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3  # mJ
            gauges[f"{key}.power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1e3  # mW
            gauges[f"{key}.sm_util_pct"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            gauges[f"{key}.memory_used_b"] = float(nvml.nvmlDeviceGetMemoryInfo(handle).used)
            gauges[f"{key}.sm_clock_mhz"] = float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
            gauges[f"{key}.memory_clock_mhz"] = float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM))
        return Reading(counters, gauges)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_gpus() -> list[str] | None:
    """The GPUs this process's engine uses: ``CUDA_VISIBLE_DEVICES`` (speedbench pins it per
    engine), None for all."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]
