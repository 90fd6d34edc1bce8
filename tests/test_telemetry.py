"""Telemetry sources and the sampler without a GPU: NVML through a stand-in module (a monkeypatched
``pynvml`` replaying recorded values, named as a stand-in), RAPL through a stand-in powercap tree
(a folder with the kernel's file layout), the engine's process tree through psutil for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.telemetry.sampler import Sampler, open_sources
from speedbench_plugin.telemetry.sources import Nvml, ProcessTreeCpu, Rapl, Unavailable


class NVMLError(Exception):
    pass


class StandInNVML:
    """A stand-in for ``pynvml``: two GPUs replaying recorded readings, one per call. GPU 0 has a
    total-energy counter (millijoules, as an H100 reports it); GPU 1 has none (``NotSupported``), so
    its energy must come from integrating power."""

    NVMLError = NVMLError
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self) -> None:
        self.energy_mj = [1_000_000, 1_000_700, 1_001_400, 1_002_100, 1_002_800]  # +700 mJ per reading
        self.power_mw = {0: [350_000, 360_000, 355_000, 365_000, 350_000], 1: [100_000, 200_000, 200_000, 100_000, 100_000]}
        self.calls = {0: 0, 1: 0}
        self.energy_calls = 0
        self.shut = False

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        raise NVMLError(f"no GPU {uuid}")

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3" if handle == 0 else b"Tesla P100-PCIE-16GB"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if handle == 1:
            raise NVMLError("Not Supported")
        value = self.energy_mj[min(self.energy_calls, len(self.energy_mj) - 1)]
        self.energy_calls += 1
        return value

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        readings = self.power_mw[handle]
        value = readings[min(self.calls[handle], len(readings) - 1)]
        self.calls[handle] += 1
        return value

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=90 if handle == 0 else 40, memory=30)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=(40 << 30) if handle == 0 else (8 << 30), total=80 << 30)

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:
        return 1980 if kind == self.NVML_CLOCK_SM else 2619


def _sample_at(sampler: Sampler, count: int) -> list[float]:
    """Take ``count`` samples by hand (no thread: the test controls when each reading happens)."""
    times = []
    for _ in range(count):
        sampler._sample()
        times.append(sampler._costs[-1][0])
        time.sleep(0.01)
    return times


def test_nvml_energy_counter_and_integrated_power_per_gpu_from_a_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = StandInNVML()
    monkeypatch.setitem(sys.modules, "pynvml", stand_in)  # what import_nvml() finds
    nvml = Nvml(["0", "1"])
    assert nvml.has_energy == {"0": True, "1": False}
    assert "GPU 0 (NVIDIA H100 80GB HBM3): total-energy counter" in nvml.source
    assert "GPU 1 (Tesla P100-PCIE-16GB): power integrated" in nvml.source
    stand_in.energy_calls = 0  # the probe above read the counter once
    sampler = Sampler([nvml], {"rapl": "stand-in: none"}, interval_s=1.0)
    ts = _sample_at(sampler, 5)
    window = sampler.window(ts[0], ts[-1])
    figures = window["figures"]
    assert figures["nvml.gpu0.energy_j"] == pytest.approx(2.8)  # 4 readings x 700 mJ
    expected = m.integrate(ts, [100.0, 200.0, 200.0, 100.0, 100.0], ts[0], ts[-1])
    assert figures["nvml.gpu1.energy_j"] == pytest.approx(expected) and expected > 0
    assert figures["nvml.gpu0.power_w.mean"] == pytest.approx(356.0) and figures["nvml.gpu0.power_w.peak"] == 365.0
    assert figures["nvml.gpu1.sm_util_pct.mean"] == 40.0 and figures["nvml.gpu0.memory_used_b.peak"] == 40 << 30
    assert figures["nvml.gpu0.sm_clock_mhz.mean"] == 1980.0 and figures["nvml.gpu0.memory_clock_mhz.mean"] == 2619.0
    assert window["missing"] == {"rapl": "stand-in: none"} and window["sources"]["nvml"] == nvml.source
    sampler.stop()
    assert stand_in.shut


def test_nvml_names_why_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails, as without nvidia-ml-py
    sources, missing = open_sources()
    assert "nvidia-ml-py is not installed" in missing["nvml"]
    assert next(s.name for s in sources) == "cpu"
    broken = StandInNVML()
    with pytest.raises(Unavailable, match="no GPU GPU-abc"):
        Nvml(["GPU-abc"], broken)


def _powercap(root: Path, energy_uj: int, span: int = 1_000_000) -> None:
    domain = root / "intel-rapl:0"
    (root / "intel-rapl:0:0").mkdir(parents=True, exist_ok=True)  # a sub-domain: not summed
    domain.mkdir(parents=True, exist_ok=True)
    (domain / "name").write_text("package-0\n")
    (domain / "max_energy_range_uj").write_text(f"{span}\n")
    (domain / "energy_uj").write_text(f"{energy_uj}\n")


def test_rapl_package_energy_undoes_the_counter_wrap(tmp_path: Path) -> None:
    """A stand-in powercap tree: the kernel's files in a folder."""
    _powercap(tmp_path, 900_000)
    rapl = Rapl(tmp_path)
    assert rapl.read().counters == {"energy_j": 0.0}
    _powercap(tmp_path, 100_000)  # wrapped past max_energy_range_uj: 200_000 µJ later
    assert rapl.read().counters["energy_j"] == pytest.approx(0.2)
    with pytest.raises(Unavailable, match="exposes no RAPL"):
        Rapl(tmp_path / "absent")


def test_process_tree_cpu_counts_a_child_process(tmp_path: Path) -> None:
    tree = ProcessTreeCpu()
    before = tree.read().counters["cpu_s"]
    busy = subprocess.Popen([sys.executable, "-c", ("import time\nend = time.process_time() + 0.3\n"
                             "while time.process_time() < end: pass\ntime.sleep(30)")])
    try:
        tree._tree_read = -1e9  # look the tree up again now
        deadline = time.monotonic() + 60
        while tree.read().counters["cpu_s"] - before < 0.3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree.read().counters["cpu_s"] - before >= 0.3
        assert busy.pid in tree._seen and tree.root_pid == os.getpid()
    finally:
        busy.kill()
        busy.wait()


def test_a_window_without_samples_around_it_has_no_counter_figure() -> None:
    class Counter:
        name, source = "cpu", "stand-in counter"

        def __init__(self) -> None:
            self.value = 0.0

        def read(self) -> Any:
            self.value += 1.0
            return SimpleNamespace(counters={"cpu_s": self.value}, gauges={})

    sampler = Sampler([Counter()], {}, interval_s=1.0)
    ts = _sample_at(sampler, 3)
    assert sampler.window(ts[0], ts[2])["figures"]["cpu.cpu_s"] == pytest.approx(2.0)
    assert sampler.window(ts[0], ts[1] + (ts[2] - ts[1]) / 2)["figures"]["cpu.cpu_s"] == pytest.approx(1.5, rel=0.05)
    assert sampler.window(ts[0] - 1, ts[2])["figures"]["cpu.cpu_s"] is None  # started before any sample
    with pytest.raises(ValueError, match="above 0"):
        Sampler([], {}, interval_s=0)


CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

ITEMS = [WorkItem(f"q{i}", "demo", prompt_ids=tuple(range(5 + i))) for i in range(3)]

@pytest.mark.qualitative
def test_case(sb_case, sb_concurrency):
    sb_case.run(ITEMS, split="qualitative", labels={"category": "demo"}, concurrency=sb_concurrency)
"""


@pytest.mark.parametrize("interval", ["0.05", "0.3"])
def test_the_interval_option_sets_the_sampling_interval_in_the_record(
        pytester: pytest.Pytester, tiny_model_dir: str, interval: str) -> None:
    pytester.makepyfile(test_cases=CASES)
    own = pytester.path / "own.json"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "fake", f"--speedbench-model={tiny_model_dir}",
        "--speedbench-drafter", "none", "--speedbench-max-tokens", "16", "--benchmark-disable",
        "--speedbench-telemetry-interval", interval, "--speedbench-json", str(own),
        f"--speedbench-run-dir={pytester.path / 'run'}")
    assert result.ret == 0, result.stdout.str()[-3000:]
    (bench,) = json.loads(own.read_text())["benchmarks"]
    assert bench["extra_info"]["speedbench"]["sections"]["cost"]["sampler"]["interval_s"] == float(interval)


@pytest.mark.parametrize("bad", ["-1", "fast", "61"])
def test_a_bad_interval_is_a_usage_error_naming_the_option(
        pytester: pytest.Pytester, tiny_model_dir: str, bad: str) -> None:
    pytester.makepyfile(test_cases=CASES)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--speedbench-engine", "fake", f"--speedbench-model={tiny_model_dir}",
        f"--speedbench-telemetry-interval={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--speedbench-telemetry-interval" in result.stdout.str() + result.stderr.str()
