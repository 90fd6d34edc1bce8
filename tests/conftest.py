from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``bigbench`` need its extracted tasks: without them (the 1.0.0 sdist is not on
    every package index) they are skipped with the reason, and the no-BIG-bench build is tested instead."""
    from speedbench_plugin.data.sources import bigbench_available, bigbench_dir

    if bigbench_available():
        return
    skip = pytest.mark.skip(reason=f"BIG-bench tasks are not extracted in {bigbench_dir()} "
                                   "(python -m speedbench_plugin.data fetch-bigbench [--sdist PATH])")
    for item in items:
        if item.get_closest_marker("bigbench") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _not_an_xdist_worker_below(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `make test`'s xdist workers, the pytest sessions a test starts must not inherit the
    worker's PYTEST_XDIST_* variables: pytest-benchmark reads them and disables itself, as if those
    sessions ran under xdist."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    """A 2-layer random Llama with the embedded tokenizer (built into the cache on first use)."""
    from speedbench_plugin.models import tiny_model

    return str(tiny_model())


@pytest.fixture(scope="session")
def embedded_model_dir() -> str:
    from speedbench_plugin.models import embedded_model

    return str(embedded_model())


class Tmpfs:
    """Small tmpfs mounts of a test's own: real filesystems to fill up or make read-only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted: list[Path] = []

    def mount(self, size: str) -> Path:
        """A fresh tmpfs of ``size`` (e.g. ``"64k"``); skips where mounting is not allowed (it needs
        root with CAP_SYS_ADMIN)."""
        point = self.root / f"tmpfs{len(self.mounted)}"
        point.mkdir()
        self._run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], "mount a tmpfs")
        self.mounted.append(point)
        return point

    def read_only(self, point: Path) -> None:
        self._run(["mount", "-o", "remount,ro", str(point)], f"remount {point} read-only")

    @staticmethod
    def _run(command: list[str], what: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot {what} here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")

    def unmount_all(self) -> None:
        for point in self.mounted:
            if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """Mount real tmpfs filesystems for fault tests (see :class:`Tmpfs`); unmounted at teardown."""
    mounts = Tmpfs(tmp_path)
    yield mounts
    mounts.unmount_all()
