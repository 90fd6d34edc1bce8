"""One engine per GPU under pytest-xdist: each worker owns a contiguous set of devices.

With ``pytest -n N`` every worker starts its own engine; without pinning all N would land on the
first GPU. Worker ``gwI`` of N gets the devices ``[I*G, (I+1)*G)`` of the visible list, where G is
the number of GPUs one engine uses (tensor parallel x pipeline parallel), and its process gets
``CUDA_VISIBLE_DEVICES`` set to them before any engine starts (engines spawned as subprocesses
inherit it). The visible list is ``--speedbench-devices``, else ``CUDA_VISIBLE_DEVICES``, else
what ``nvidia-smi`` lists; with none of them (a CPU machine) nothing is pinned. The device set is
recorded in every case (``CaseKey.devices``), so the gate treats a different set as a different
speed fingerprint.

A layout that would put two engines on one GPU (workers x G > GPUs) is refused: under xdist on
the controller as soon as a worker has collected engine cases (the controller collects nothing
itself), and without xdist after collection. Whatever slips past that (a test that starts an
engine without the ``sb_engine`` parameter, a worker that replaced a crashed one) fails at
engine start with the same message.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from speedbench_plugin import options as o
from speedbench_plugin.settings import Settings, settings_of

OFF = "off"
ENV = "CUDA_VISIBLE_DEVICES"
PLUGIN_NAME = "speedbench-devices"


def _device_list(raw: Any, name: str) -> tuple[str, ...] | None:
    """``0,1,2,3`` (or GPU UUIDs) -> ('0', '1', '2', '3'); ``off`` -> (); unset -> None."""
    values = o.words(raw, name)
    if values is None:
        return None
    if [v.lower() for v in values] == [OFF]:
        return ()
    if len(set(values)) != len(values):
        raise pytest.UsageError(f"--{name} {raw!r}: a device is listed twice")
    return values


DEVICES = o.Option(
    "speedbench-devices",
    "GPUs the xdist workers share out, one contiguous set of (tensor x pipeline parallel) GPUs per worker, "
    "e.g. 0,1,2,3 (default: CUDA_VISIBLE_DEVICES, else nvidia-smi's list; 'off': pin nothing)",
    kind=_device_list,
)
OPTIONS = (DEVICES,)


class LayoutError(ValueError):
    """Workers x GPUs per engine exceed the GPUs there are."""


@dataclass(frozen=True)
class Visible:
    devices: tuple[str, ...]
    source: str  # where the list came from, for messages

    def describe(self) -> str:
        return f"{len(self.devices)} visible ({','.join(self.devices) or 'none'}, from {self.source})"


def nvidia_smi_indices() -> tuple[str, ...] | None:
    """The GPU indices nvidia-smi lists; None when it is absent or fails (no driver)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def visible_devices(explicit: tuple[str, ...] | None, environ: Mapping[str, str],
                    query: Callable[[], tuple[str, ...] | None] = nvidia_smi_indices) -> Visible:
    """The devices to share out, and where the list came from."""
    if explicit is not None:
        return Visible(explicit, f"--{DEVICES.name}")
    if ENV in environ:
        # CUDA's own rule: the list ends at the first invalid entry, "-1" or "" hide every GPU.
        listed = tuple(part.strip() for part in environ[ENV].split(",") if part.strip())
        if "-1" in listed:
            listed = listed[:listed.index("-1")]
        return Visible(listed, ENV)
    found = query()
    return Visible(found or (), "nvidia-smi" if found is not None else "no nvidia-smi")


def parallelism(settings: Settings) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel): one engine occupies their product of GPUs."""
    pp = settings.engine_args.get("pipeline_parallel_size", settings.engine_args.get("pp_size", 1))
    pp = pp if isinstance(pp, int) and not isinstance(pp, bool) and pp > 0 else 1
    return settings.tensor_parallel_size, pp


def worker_index(worker_id: str) -> int:
    """pytest-xdist's worker id ``gw3`` -> 3."""
    match = re.fullmatch(r"gw(\d+)", worker_id.strip())
    if match is None:
        raise ValueError(f"not a pytest-xdist worker id: {worker_id!r} (expected gw0, gw1, ...)")
    return int(match.group(1))


def oversubscription(visible: Visible, workers: int, tp: int, pp: int = 1) -> str | None:
    """Why the layout would not fit the GPUs, with what to change; None when it fits."""
    per_engine = tp * pp
    need = workers * per_engine
    if need <= len(visible.devices):
        return None
    engine = f"tensor_parallel_size {tp}" + (f" x pipeline_parallel_size {pp}" if pp > 1 else "")
    fixes = []
    if workers > 1:
        head = (f"{workers} xdist workers x {engine} = {need} GPUs needed, but {visible.describe()}: "
                "two engines would share a GPU.")
        fits = len(visible.devices) // per_engine
        if fits:
            fixes.append(f"run with -n {fits}")
    else:
        head = f"one engine with {engine} needs {need} GPUs, but {visible.describe()}."
    if per_engine > 1:
        fixes.append("lower tensor_parallel_size" + (" or pipeline_parallel_size" if pp > 1 else ""))
    if visible.source != "nvidia-smi":  # a subset was chosen: more may be there
        fixes.append(f"make {need} GPUs visible ({visible.source})")
    return f"{head} Fix: {'; or '.join(fixes)}."


def assign(visible: Visible, workers: int, tp: int, pp: int = 1) -> list[tuple[str, ...]]:
    """Each worker's contiguous device set, worker 0 first; LayoutError when they do not fit."""
    if workers < 1 or tp < 1 or pp < 1:
        raise ValueError(f"workers ({workers}), tensor and pipeline parallel ({tp}, {pp}) must be at least 1")
    problem = oversubscription(visible, workers, tp, pp)
    if problem:
        raise LayoutError(problem)
    per_engine = tp * pp
    return [visible.devices[i * per_engine:(i + 1) * per_engine] for i in range(workers)]


@dataclass(frozen=True)
class Pinning:
    """This process's share: the devices its engines get, or why no engine may start here."""

    devices: tuple[str, ...] | None = None  # None: nothing pinned
    problem: str | None = None

    @property
    def label(self) -> str | None:
        """What the case key records: ``"2,3"``."""
        return ",".join(self.devices) if self.devices else None


def plan(visible: Visible, parallel: tuple[int, int], worker_id: str | None, worker_count: int | None) -> Pinning:
    """This process's devices: worker ``gwI`` of ``worker_count``, or the only process (None)."""
    if not visible.devices:
        return Pinning()
    workers, index = 1, 0
    if worker_id is not None:
        workers, index = worker_count or 1, worker_index(worker_id)
    problem = oversubscription(visible, workers, *parallel)
    if problem:
        return Pinning(problem=problem)
    if index >= workers:
        # xdist gives a worker that replaces a crashed one a new id (gwN for N workers): which
        # devices the dead worker held cannot be known here.
        return Pinning(problem=f"xdist worker {worker_id} replaced a crashed worker; its devices are unknown "
                               f"(workers gw0..gw{workers - 1} own {visible.describe()}): rerun the session")
    return Pinning(assign(visible, workers, *parallel)[index])


# --- the pytest side ---------------------------------------------------------------------------

PINNING_KEY = pytest.StashKey[Pinning]()


def _xdist_workers(config: pytest.Config) -> int:
    """On the xdist controller: how many workers it starts (0 without xdist)."""
    if getattr(config.option, "dist", "no") == "no":
        return 0
    return len(getattr(config.option, "tx", None) or [])


def _engine_is_remote(settings: Settings) -> bool:
    return bool(settings.endpoint)


def _visible(config: pytest.Config) -> Visible:
    return visible_devices(o.value(config, DEVICES), os.environ)


class DevicePlugin:
    """Plans and applies this process's pinning at configure; refuses oversubscribed layouts."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.controller_workers = 0 if hasattr(config, "workerinput") else _xdist_workers(config)
        self.visible: Visible | None = None
        self.checked = False

    def _settings(self) -> Settings:
        return settings_of(self.config)  # read late: other plugins may widen it at configure

    def configure(self) -> None:
        settings = self._settings()
        if _engine_is_remote(settings):
            self.config.stash[PINNING_KEY] = Pinning()
            return
        self.visible = _visible(self.config)
        if self.controller_workers:
            return  # the controller starts no engine; it checks the layout once workers have collected
        # From this process's own xdist role, not the environment: a pytest started by a test running
        # under xdist inherits PYTEST_XDIST_WORKER without being a worker.
        worker: dict[str, Any] | None = getattr(self.config, "workerinput", None)
        pinning = plan(self.visible, parallelism(settings), worker["workerid"] if worker else None,
                       int(worker["workercount"]) if worker else None)
        self.config.stash[PINNING_KEY] = pinning
        if pinning.devices:
            os.environ[ENV] = ",".join(pinning.devices)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        if self.visible is None or not self.visible.devices:
            return []
        tp, pp = parallelism(self._settings())
        workers = self.controller_workers or 1
        problem = oversubscription(self.visible, workers, tp, pp)
        if problem:
            return [f"speedbench devices: {problem}"]
        shares = assign(self.visible, workers, tp, pp)
        names = [f"gw{i}" for i in range(workers)] if self.controller_workers else ["this process"]
        return [f"speedbench devices ({self.visible.describe()}, {tp * pp} per engine): "
                + "; ".join(f"{name} -> {ENV}={','.join(share)}" for name, share in zip(names, shares))]

    def _refuse(self, uses_engine: bool) -> None:
        if self.checked or not uses_engine or self.visible is None or not self.visible.devices:
            return  # no GPUs (or a remote engine): nothing is pinned, nothing to share
        self.checked = True
        problem = oversubscription(self.visible, self.controller_workers or 1, *parallelism(self._settings()))
        if problem:
            raise pytest.UsageError(f"--{DEVICES.name}: {problem}")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if hasattr(config, "workerinput"):
            return  # a worker's error would crash it: the controller refuses instead
        self._refuse(any("sb_engine" in getattr(item, "fixturenames", ()) for item in items))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        # Called before any test is scheduled. The controller sees test ids only: engine cases
        # carry the sb_engine parameter's id, "[<engine>-<drafter id>" (plugin.pytest_generate_tests).
        settings = self._settings()
        heads = tuple(f"[{settings.engine}-{d.id}" for d in settings.drafters)
        self._refuse(any(head + tail in nodeid for nodeid in ids for head in heads for tail in ("-", "]")))


def register(config: pytest.Config) -> None:
    plugin = DevicePlugin(config)
    config.pluginmanager.register(plugin, PLUGIN_NAME)
    plugin.configure()


def pinning(config: pytest.Config) -> Pinning:
    """This process's pinning; an engine must not start when it names a problem."""
    return config.stash.get(PINNING_KEY, Pinning())


__all__ = ["DEVICES", "OPTIONS", "LayoutError", "Pinning", "Visible", "assign", "oversubscription", "parallelism",
           "pinning", "plan", "register", "visible_devices", "worker_index"]
