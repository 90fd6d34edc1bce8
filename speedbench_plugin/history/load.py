"""Earlier runs for the history: results files (``--speedbench-json``, ``--benchmark-json``,
baselines) and run folders (their results files, else their journal), ordered by when they ran.

A run given twice (its folder and its results file) is kept once. Records read from a journal
lack the session-level sections; the same functions the session uses add them
(``speedup_vs_none``, ``cost_vs_none``), so every figure still comes from the suite's own code.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

from speedbench_plugin.journal import JOURNAL_NAME, read_journal
from speedbench_plugin.record import Record, RecordSchemaError, session_speedups
from speedbench_plugin.report.model import ReportInputError, Run, read_run
from speedbench_plugin.telemetry.cost import session_cost_ratios


def _journal_started(path: Path) -> str | None:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("kind") == "session":
                return str(entry.get("started") or "") or None
    return None


def _with_session_sections(records: Sequence[Record]) -> list[Record]:
    extra: dict[str, dict[str, object]] = {}
    for found in (session_speedups(records), session_cost_ratios(records)):
        for case_id, sections in found.items():
            extra.setdefault(case_id, {}).update(sections)
    return [r.with_sections({k: v for k, v in extra.get(r.case_id, {}).items() if r.section(k) is None}) for r in records]


def read_journal_run(folder: Path) -> Run:
    path = folder / JOURNAL_NAME
    contents = read_journal(path)
    records = []
    for nodeid, raw in contents.records.items():
        try:
            records.append(Record.from_json(raw, where=f"{path}: {nodeid}"))
        except (RecordSchemaError, ValueError, TypeError) as exc:
            raise ReportInputError(str(exc)) from None
    if not records:
        raise ReportInputError(f"{path}: holds no finished case")
    fingerprint = contents.fingerprint or {}
    return Run(folder.name, path, "run folder journal", tuple(_with_session_sections(records)), _journal_started(path),
               contents.ended_partial is not False, {"node": fingerprint.get("machine")},
               speedbench_version=fingerprint.get("speedbench_version"))


def _results_in(folder: Path) -> list[Path]:
    """The results files directly in a run folder (the journal is the fallback)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            head = path.read_text(encoding="utf-8")[:200000]
        except (OSError, UnicodeDecodeError):
            continue
        if '"benchmarks"' in head:
            found.append(path)
    return found


def read_runs(paths: Sequence[str | Path], nested: bool = False) -> list[Run]:
    """Every run the paths hold: a file is one run; a folder is the run it is (its results files, else
    its journal), or, without either, the runs in its subfolders and files (an empty subfolder, or a
    JSON file there that is not a results file, is passed over: a CI download that found nothing)."""
    runs: list[Run] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            results = _results_in(path)
            if results:
                runs += [read_run(p, path.name if len(results) == 1 else f"{path.name}/{p.stem}") for p in results]
            elif (path / JOURNAL_NAME).is_file():
                runs.append(read_journal_run(path))
            else:
                inner = read_runs(sorted(p for p in path.iterdir() if p.is_dir() or p.suffix == ".json"), nested=True)
                if not inner and not nested:
                    raise ReportInputError(f"{path}: no results file, journal or run folder in it")
                runs += inner
        elif nested and path.suffix == ".json" and path not in _results_in(path.parent):
            continue
        elif path.exists():
            runs.append(read_run(path, path.stem))
        else:
            raise ReportInputError(f"{path}: no such file or folder")
    return runs


def run_time(run: Run) -> dt.datetime:
    """When the run ran: its results file's stamp, else the file's modification time (UTC)."""
    if run.created:
        try:
            stamp = dt.datetime.fromisoformat(run.created.replace("Z", "+00:00"))
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)
        except ValueError:
            pass
    return dt.datetime.fromtimestamp(run.path.stat().st_mtime, dt.timezone.utc)


RunIdentity = tuple[tuple[str, str, tuple[float, ...]], ...]


def _identity(run: Run) -> RunIdentity:
    """What makes a run itself: each case, its model and its round wall times (two runs never
    share them), so a run folder and its results file given together count once."""
    return tuple(sorted((r.case_id, r.case.model_sha, tuple(r.speed.wall_time_s_rounds)) for r in run.records))


def history_runs(paths: Sequence[str | Path]) -> list[Run]:
    """The runs, each once, oldest first."""
    runs = read_runs(paths)
    if not runs:
        raise ReportInputError("no results given")
    unique: dict[RunIdentity, Run] = {}
    for run in runs:
        unique.setdefault(_identity(run), run)
    return sorted(unique.values(), key=run_time)
