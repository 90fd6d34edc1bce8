"""Baseline files: where they live, what they hold, and refusing the ones we cannot read.

A baseline is the suite's results document (pytest-benchmark's JSON shape: ``benchmarks[*].
extra_info.speedbench`` is the full per-case record, per-request raw counts included) plus a
schema version and fingerprints: one for the machine, one per case (engine and version, model
and sha, drafter, k, concurrency, workload).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedbench_plugin import __version__
from speedbench_plugin.record import SCHEMA_VERSION as RECORD_SCHEMA
from speedbench_plugin.record import Record, RecordSchemaError

BASELINE_SCHEMA = 1
BASELINE_DIR = Path("results") / "baselines"
SCHEMA_KEY = "speedbench_baseline_schema"
class BaselineError(Exception):
    """A baseline that cannot be used; the message says which file and what to do."""


def resolve(value: str, rootdir: Path, *, must_exist: bool) -> Path:
    """A path as given, or a bare NAME meaning ``<rootdir>/results/baselines/NAME.json``."""
    path = Path(value).expanduser()
    if path.is_absolute() or os.sep in value or "/" in value or path.suffix == ".json":
        candidates = [path if path.is_absolute() else Path.cwd() / path]
    else:
        named = rootdir / BASELINE_DIR / f"{value}.json"
        candidates = [Path.cwd() / path, named] if must_exist else [named]
    if not must_exist:
        return candidates[0]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise BaselineError(
        f"no baseline {value!r} (looked for {tried}); save one first with --speedbench-save-baseline {value}"
    )


# --- fingerprints ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi() -> dict[str, Any]:
    """GPU names, driver and CUDA version from nvidia-smi, when there is one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        query = subprocess.run(
            [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
        banner = subprocess.run([exe], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {"gpu_error": "nvidia-smi failed"}
    rows = [[part.strip() for part in line.split(",")] for line in query.splitlines() if line.strip()]
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    return {
        "gpus": [row[0] for row in rows],
        "gpu_driver": rows[0][1] if rows and len(rows[0]) > 1 else None,
        "cuda": cuda.group(1) if cuda else None,
    }


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def hardware_fingerprint() -> dict[str, Any]:
    """The machine, once per process. torch is consulted only if something already imported it."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "speedbench_version": __version__,
        "torch": _package_version("torch"),
        "gpus": [],
        "gpu_driver": None,
        "cuda": None,
    }
    info.update(_nvidia_smi())
    torch = sys.modules.get("torch")
    if torch is not None and not info["gpus"]:
        try:
            if torch.cuda.is_available():
                info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                info["cuda"] = torch.version.cuda
        except Exception as exc:  # noqa: BLE001 - a broken CUDA setup must not break the gate
            info["gpu_error"] = f"torch.cuda: {type(exc).__name__}"
    return info


# Machine facts that make speed figures incomparable; the rest (driver, CUDA, torch, versions) is
# expected to change in an upgrade and is only shown.
HARDWARE_COMPARABLE_KEYS = ("cpu_model", "gpus")


def case_fingerprint(record: Record) -> dict[str, Any]:
    """What was measured, in one place of the baseline file for a reader."""
    case = record.case
    return {"engine": case.engine, "engine_version": case.engine_version, "model": case.model,
            "model_sha": case.model_sha, "model_identity": case.model_identity, "drafter": str(case.drafter),
            "k": case.k, "concurrency": case.concurrency, "max_tokens": case.max_tokens,
            "temperature": case.temperature, "devices": case.devices,
            "resolved_config": (record.engine.get("resolved_config") or {}).get("comparable"),
            "outputs_sha256": record.outputs_sha256}


# --- the document ---------------------------------------------------------------------------


def baseline_document(records: Iterable[Record], results_document: dict[str, Any],
                      benchmark_stats: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The results document with the schema, the machine's fingerprint and per-case fingerprints.
    The gate's own verdicts (a ``comparison`` section) are not part of what a baseline stores."""
    by_id = {r.case_id: r for r in records}
    benchmarks = []
    for bench in results_document.get("benchmarks", []):
        record = by_id[bench["name"]]
        sections = {k: v for k, v in record.sections.items() if k != "comparison"}
        stored = dataclasses.replace(record, sections=sections, outcome=None).to_json()
        entry = {**bench, "extra_info": {**bench["extra_info"], "speedbench": stored,
                                         "fingerprint": case_fingerprint(record)}}
        stats = (benchmark_stats or {}).get(bench["name"])
        if stats:
            entry["stats"] = stats  # pytest-benchmark's own round timings, when it ran (not under xdist)
        benchmarks.append(entry)
    return {
        SCHEMA_KEY: BASELINE_SCHEMA,
        "record_schema": RECORD_SCHEMA,
        "speedbench_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": hardware_fingerprint(),
        **{k: v for k, v in results_document.items() if k not in ("speedbench_version", "benchmarks")},
        "benchmarks": benchmarks,
    }


@dataclass
class Baseline:
    path: Path
    created: str
    speedbench_version: str
    hardware: dict[str, Any]
    cases: dict[str, Record] = field(default_factory=dict)  # case_id -> record

    @property
    def engines(self) -> list[str]:
        return sorted({f"{r.case.engine} {r.case.engine_version}" for r in self.cases.values()})


def load(path: Path) -> Baseline:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"baseline {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise BaselineError(f"baseline {path}: not a text file (byte {exc.object[exc.start]:#04x} at offset {exc.start} "
                            "is not UTF-8); give a baseline written with --speedbench-save-baseline") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict) or SCHEMA_KEY not in document:
        raise BaselineError(
            f"baseline {path}: not a speedbench baseline (no {SCHEMA_KEY!r}); "
            "write one with --speedbench-save-baseline (a --speedbench-json or --benchmark-json file is not one)"
        )
    schema = document[SCHEMA_KEY]
    if schema != BASELINE_SCHEMA or document.get("record_schema") != RECORD_SCHEMA:
        raise BaselineError(
            f"baseline {path}: schema version {schema} (records {document.get('record_schema')}), but speedbench "
            f"{__version__} reads schema {BASELINE_SCHEMA} (records {RECORD_SCHEMA}); save a new baseline with "
            "this version (--speedbench-save-baseline) on the reference engine"
        )
    cases: dict[str, Record] = {}
    for index, bench in enumerate(document.get("benchmarks") or []):
        try:
            raw = bench["extra_info"]["speedbench"]
        except (KeyError, TypeError):
            raise BaselineError(f"baseline {path}: benchmarks[{index}] has no speedbench record") from None
        try:
            record = Record.from_json(raw, where=f"baseline {path}: benchmarks[{index}]")
        except RecordSchemaError as exc:
            raise BaselineError(f"{exc}; save a new baseline with --speedbench-save-baseline") from None
        cases[record.case_id] = record
    if not cases:
        raise BaselineError(f"baseline {path}: holds no cases")
    return Baseline(path, str(document.get("created", "?")), str(document.get("speedbench_version", "?")),
                    dict(document.get("fingerprint") or {}), cases)
