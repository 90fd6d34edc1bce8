"""The run's own folder under ``results/``: every file a session writes besides the files the user
named goes there (journal, sweep CSVs and plots, report). Created once, on the controller, with an
exclusive ``mkdir``, so two runs started in the same second never share a folder."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from speedbench_plugin import options as o

RUN_DIR = o.Option("speedbench-run-dir",
                   "folder for this run's journal, sweep files and report (default: results/<UTC stamp>-<label>)")
RUN_DIR_KEY = pytest.StashKey[Path]()


def _label(config: pytest.Config) -> str:
    marker = str(config.getoption("markexpr", "") or "").strip()
    return marker if marker.isidentifier() else "run"


def make_unique(parent: Path, stem: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise OSError(f"no free run folder named {stem}-N under {parent}")


def run_directory(config: pytest.Config) -> Path:
    """This session's run folder, created on first use."""
    if RUN_DIR_KEY not in config.stash:
        given = o.value(config, RUN_DIR)
        if given:
            path = Path(given).expanduser()
            path.mkdir(parents=True, exist_ok=True)
        else:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            path = make_unique(Path(config.rootpath) / "results", f"{stamp}-{_label(config)}")
        config.stash[RUN_DIR_KEY] = path
    return config.stash[RUN_DIR_KEY]


def display(path: Path, config: pytest.Config) -> str:
    try:
        return str(path.relative_to(config.rootpath))
    except ValueError:
        return str(path)


# A shard's own file in its run folder: written by the shard plugin, read by the merge (which is not
# a plugin, so the name lives here with the run folder's layout).
SHARD_NAME = "shard.json"
