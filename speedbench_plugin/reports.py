"""Collect records from reports (on the xdist controller too) into the run's journal as each case
finishes, add the session's cross-case figures once, then write every output from the journal's
final records: the run's ``results.json``, the suite's results file, pytest-benchmark's JSON (with
and without xdist, one schema), the extensions' files, the table.

Interrupts (Ctrl-C, SIGTERM from a CI timeout) cancel the requests in flight, let the engine shut
down and still write every output from the cases that finished, marked ``"partial": true``;
``--speedbench-resume RUN_DIR`` finishes such a run."""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import math
import os
import platform
import signal
import sys
import threading
import traceback
from collections.abc import Generator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from speedbench_plugin import __version__, benchjson
from speedbench_plugin import options as o
from speedbench_plugin.cache import ResultsWriteError, atomic_write_json, ensure_writable
from speedbench_plugin.journal import (
    JOURNAL_NAME,
    JournalContents,
    JournalError,
    JournalWriter,
    fingerprint,
    open_for_resume,
    read_journal,
)
from speedbench_plugin.metrics import AL_CONVENTIONS, request_mean
from speedbench_plugin.multiturn import table_note
from speedbench_plugin.record import SCHEMA_VERSION, Record, RecordSchemaError, session_speedups
from speedbench_plugin.rundir import RUN_DIR, RUN_DIR_KEY, display, run_directory
from speedbench_plugin.settings import RESUME, settings_of

REPORT_PROPERTY = "speedbench"
RESULTS_NAME = "results.json"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def benchmark_entry(record: Record) -> dict[str, Any]:
    """A record as an entry of pytest-benchmark's ``benchmarks`` list."""
    return {"name": record.case_id, "fullname": record.case.nodeid, "group": record.case.split,
            "extra_info": {"speedbench": record.to_json()}}


def results_document(records: Sequence[Record], partial: str | None = None,
                     failed_without_record: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """pytest-benchmark's JSON shape, so its tooling reads the suite's own file too. ``partial``:
    why the run did not finish (its cases are complete; others are missing). ``failed_without_record``:
    cases that failed before they measured anything (an engine that refused to start), with the cause."""
    return {
        "machine_info": {"node": platform.node(), "machine": platform.machine(), "python_version": platform.python_version()},
        "speedbench_version": __version__,
        "speedbench_record_schema": SCHEMA_VERSION,
        "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "partial": partial is not None,
        "partial_reason": partial,
        "benchmarks": [benchmark_entry(r) for r in records],
        "failed_without_record": [dict(f) for f in failed_without_record],
    }


CASE_PROPERTY = "speedbench_case"  # marks a benchmark case's reports (not a test of the suite's own)
# Cases that failed before they had a record (e.g. the engine refused to start): node id, phase, cause.
FAILED_WITHOUT_RECORD_KEY = pytest.StashKey[list[dict[str, str]]]()


def failure_cause(report: pytest.TestReport) -> str:
    """The exception line pytest shows for a failed phase: the engine's own cause where the engine
    module put it into its error, never "see above"."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if message:
        return str(message)
    lines = [line[1:].strip() for line in report.longreprtext.splitlines() if line.startswith("E ")]
    return " ".join(lines) if lines else (report.longreprtext.strip().splitlines() or ["(no message)"])[-1]


def _al_cell(record: Record, convention: str = "speed-bench") -> str:
    acc = record.acceptance
    mark = "*" if acc.histogram_source == "stream" and acc.stream_merged else ""
    return _fmt(getattr(acc, AL_CONVENTIONS[convention])) + mark


def overall_specdec_bench(records: Sequence[Record]) -> dict[str, float]:
    """specdec_bench's overall AL per drafter: the unweighted mean over every request of every
    category (not the mean of the categories' means)."""
    by_drafter: dict[str, list[float | None]] = {}
    for record in records:
        if record.case.k:
            by_drafter.setdefault(record.case.drafter.id, []).extend(
                row.acceptance_length_specdec_bench for row in record.requests if not row.error)
    return {drafter: request_mean(values) for drafter, values in sorted(by_drafter.items())}


def _fidelity_cell(record: Record) -> str:
    check = record.fidelity.get("per_request") or record.fidelity.get("global")
    if check is None:
        return "-"
    short = {"exact": "exact", "within the end-cut bound": "≤cut", "merged steps": "merged", "unexplained": "GAP"}
    coalesced = (record.engine.get("stream_mode") or {}).get("mode") == "coalesced"
    if check.verdict == "merged steps" and coalesced and record.acceptance.histogram_source != "stream":
        # Chunks of several steps by choice: the figures come from the engine's per-step record.
        return "coalesced"
    return f"{short.get(check.verdict, check.verdict)} {check.rel_diff * 100:+.2f}%" if check.rel_diff is not None else short.get(check.verdict, "?")


# Cost columns: (figure in the cost section, header, scale to the shown unit). Shown only when a
# record carries the figure; the figures and their ratios to ``none`` come from metrics, as recorded.
COST_COLUMNS = (("cpu_s_per_output_token", "CPU ms/out", 1000.0), ("gpu_energy_j_per_output_token", "GPU J/out", 1.0))


def _cost_cell(record: Record, key: str, scale: float) -> str:
    """The record's cost per output token, with the ``none`` drafter's over this case's in brackets."""
    value = (record.section("cost") or {}).get(key)
    if value is None:
        return "-"
    vs_none = (record.section("cost_vs_none") or {}).get(key)
    return _fmt(scale * value, 3) + (f" ({vs_none:.2f}x)" if vs_none is not None else "")


def render_table(records: Sequence[Record], width: int = 160, al_convention: str = "speed-bench") -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="speedbench: speculative decoding per case", title_justify="left")
    columns = (
        ("case", "left"), ("drafter", "left"), ("conc", "right"), ("reqs", "right"),
        ("AL" if al_convention == "speed-bench" else f"AL ({al_convention})", "right"),
        ("AL drafting", "right"), ("AR", "right"), ("CAR", "left"), ("out tok/s", "right"),
        ("user tok/s", "right"), ("TTFT s", "right"), ("speedup", "right"), ("stream vs ctr", "right"),
        ("efficiency", "right"), ("client µs/out", "right"),
    )
    costs = [c for c in COST_COLUMNS if any((r.section("cost") or {}).get(c[0]) is not None for r in records)]
    for name, justify in (*columns, *((header, "right") for _, header, _ in costs)):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    ordered = sorted(records, key=lambda r: (r.case.split, r.case.label, r.case.drafter.id, r.case.concurrency))
    for r in ordered:
        gain = (r.section("speedup_vs_none") or {}).get("output_tps")
        efficiency = _fmt(r.speed.harness_efficiency) + (" client-bound" if r.speed.client_bound else "")
        table.add_row(
            r.case.label, r.case.drafter.id, str(r.case.concurrency), str(len(r.requests)),
            _al_cell(r, al_convention), _fmt(r.acceptance.acceptance_length_drafting_steps), _fmt(r.acceptance.acceptance_rate),
            " ".join(_fmt(v) for v in r.acceptance.conditional_acceptance_rates) or "-",
            _fmt(r.speed.output_tps, 1), _fmt(r.speed.user_tps_median, 1), _fmt(r.speed.ttft_median_s, 3),
            f"{gain:.2f}x" if gain else "-", _fidelity_cell(r), efficiency if r.speed.harness_efficiency is not None else "-",
            _fmt(r.speed.client_cpu_us_per_output, 1), *(_cost_cell(r, key, scale) for key, _, scale in costs),
        )
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(table)
    notes = []
    merged = [r for r in ordered if r.acceptance.stream_merged and r.acceptance.histogram_source == "stream"]
    if merged:
        worst = max(merged, key=lambda r: r.acceptance.merge_rate or 0)
        notes.append(f"* the stream merged engine steps ({len(merged)} case(s), up to {100 * (worst.acceptance.merge_rate or 0):.1f}% "
                     "of chunks) and the engine gave no per-step record: AL, pp and CAR from the stream overstate "
                     "acceptance. See docs/concepts/metrics.md, \"Merged steps\", for making the stream exact.")
    if costs:
        notes.append(f"{', '.join(header for _, header, _ in costs)}: the engine's cost per output token (the record's cost "
                     "section); in brackets the none drafter's over this case's, above 1x when SD spends less per token")
    sourced = sorted({r.acceptance.histogram_source for r in ordered if r.case.k})
    if sourced:
        notes.append(f"AL/pp/CAR step histogram from: {', '.join(sourced)}; AR and AL drafting from counters: "
                     f"{', '.join(sorted({r.counters.source or 'none' for r in ordered if r.case.k}))}")
    gaps = [r for r in ordered if any(c.verdict == "unexplained" for c in r.fidelity.values())]
    if gaps:
        notes.append(f"GAP: stream and counters disagree beyond what end cuts and merges explain in {len(gaps)} case(s) "
                     f"({', '.join(r.case_id for r in gaps[:3])}); --speedbench-strict-fidelity fails them")
    bound = [r for r in ordered if r.speed.client_bound]
    if bound:
        notes.append(f"CLIENT-BOUND: in {len(bound)} case(s) ({', '.join(r.case_id for r in bound[:3])}) the streamed figures "
                     "fell behind the engine's own path: they measure the client, and the gate does not judge their speed. "
                     "See docs/guides/client-cost.md.")
    if al_convention == "specdec-bench":
        overall = overall_specdec_bench(ordered)
        if overall:
            notes.append("specdec_bench overall AL (mean over all requests): "
                         + ", ".join(f"{drafter} {_fmt(value, 4)}" for drafter, value in overall.items()))
    conversations = table_note(ordered)
    if conversations:
        notes.append(conversations)
    return buffer.getvalue() + "".join(f"{note}\n" for note in notes)


def _log_to_stderr_where_capture_closed() -> None:
    """An engine that set up its logging during a case (vLLM does) holds pytest's capture stream,
    closed by now when an interrupt moved the engine's shutdown here: its shutdown logs would each
    print "--- Logging error --- ... I/O operation on closed file". They go to stderr instead."""
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
                with handler.lock or contextlib.nullcontext():  # not setStream(): it flushes the closed stream
                    handler.stream = sys.__stderr__


class ReportsPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[Record] = []
        self._final: list[Record] | None = None
        self._benchmark_json_handled = False
        self.interrupted: str | None = None  # the signal that stopped the run
        self._finishing = False
        self.later_signals: list[str] = []  # signals after the first, or while the outputs were written
        self._session: pytest.Session | None = None
        self._journal: JournalWriter | None = None
        self._journal_problem: str | None = None
        self._fingerprint = fingerprint(config)
        self.resumed: JournalContents | None = None
        self._previous_handlers: dict[int, Any] = {}
        resume = settings_of(config).resume
        if resume:
            self._open_resumed(Path(resume).expanduser())
        if not self.is_worker:
            self._install_signal_handlers()

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # --- resuming ---

    def _open_resumed(self, run_dir: Path) -> None:
        given = o.value(self.config, RUN_DIR)
        if given and Path(given).expanduser().resolve() != run_dir.resolve():
            raise pytest.UsageError(f"--{RESUME.name} {run_dir} and --{RUN_DIR.name} {given}: a resumed run "
                                    "continues in its own folder; give one of them")
        try:
            contents = open_for_resume(run_dir, self._fingerprint)
            records = self._records_of(contents)
        except JournalError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.config.stash[RUN_DIR_KEY] = run_dir
        self.resumed = contents
        if not self.is_worker:
            self.records = records

    @staticmethod
    def _records_of(contents: JournalContents) -> list[Record]:
        try:
            return [Record.from_json(data, where=f"{contents.path} ({nodeid})") for nodeid, data in contents.records.items()]
        except RecordSchemaError as exc:
            raise JournalError(str(exc)) from None

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """A resumed run runs only the cases its journal lacks."""
        cases = [item for item in items if "sb_engine" in getattr(item, "fixturenames", ())]
        self._collected_cases = len(cases)
        for item in cases:  # travels with the reports to an xdist controller, which collects nothing
            item.user_properties.append((CASE_PROPERTY, True))
        if self.resumed is None:
            return
        done = [item for item in items if item.nodeid in self.resumed.records]
        if done:
            config.hook.pytest_deselected(items=done)
            items[:] = [item for item in items if item.nodeid not in self.resumed.records]

    # --- interrupts ---

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-C or SIGTERM: pytest's interrupt path (the request in flight is cancelled, the engine
        shuts down in teardown), then the outputs are written from the finished cases.

        Only the first signal before the session's end interrupts. Any later one (a second Ctrl-C, a
        CI runner's SIGTERM after its own SIGINT), or one while the engine shuts down and the outputs
        are written, is noted and waits for them: raised there, it would cut a shutdown (leaving
        engine processes behind) or skip writers. Both are bounded; ``kill -9`` abandons them, and
        the journal still holds every finished case."""
        name = signal.Signals(signum).name
        if self._finishing or self.interrupted:
            self.later_signals.append(name)
            doing = "shutting the engine down and writing the results of the finished cases"
            with contextlib.suppress(OSError):
                os.write(2, f"\nspeedbench: {name} again: still {doing}; kill -9 abandons them (the journal "
                            "keeps every finished case)\n".encode())
            return
        self.interrupted = name
        raise KeyboardInterrupt(name)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        if self._journal is not None:
            self._journal.close()

    # --- collecting ---

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        has_record = any(name == REPORT_PROPERTY for name, _ in report.user_properties)
        if report.failed and report.when in ("setup", "call") and not has_record and not self.is_worker \
                and any(name == CASE_PROPERTY for name, _ in report.user_properties):
            failures = self.config.stash.setdefault(FAILED_WITHOUT_RECORD_KEY, [])
            failures.append({"nodeid": report.nodeid, "when": report.when, "error": failure_cause(report)})
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == REPORT_PROPERTY and isinstance(value, dict):
                record = Record.from_json(value, where=report.nodeid).with_outcome(report.outcome)
                self.records.append(record)
                if not self.is_worker:
                    self._journal_record(report.nodeid, record)

    @property
    def failed_without_record(self) -> list[dict[str, str]]:
        failures: list[dict[str, str]] = self.config.stash.get(FAILED_WITHOUT_RECORD_KEY, [])
        return list(failures)

    def _journal_writer(self) -> JournalWriter | None:
        if self._journal is None and self._journal_problem is None:
            try:
                self._journal = JournalWriter(run_directory(self.config) / JOURNAL_NAME)
                self._journal.session(self._fingerprint, resumed=self.resumed is not None)
            except OSError as exc:
                self._journal_failed(exc)
        return self._journal

    def _journal_failed(self, exc: OSError) -> None:
        self._journal_problem = f"{type(exc).__name__}: {exc}"
        self._journal = None
        self.config.get_terminal_writer().line(
            f"speedbench: the journal cannot be written ({self._journal_problem}); results will be written at the "
            "end of the session only", red=True)

    def _journal_record(self, nodeid: str, record: Record) -> None:
        writer = self._journal_writer()
        if writer is None:
            return
        try:
            writer.record(nodeid, record.to_json())
        except OSError as exc:
            self._journal_failed(exc)

    def _journaled_records(self) -> list[Record] | None:
        """The session's records as the journal holds them (the outputs are built from it)."""
        if self._journal is None or self._journal_problem is not None:
            return None
        try:
            return self._records_of(read_journal(self._journal.path))
        except (OSError, JournalError) as exc:
            self._journal_problem = f"reading it back failed: {exc}"
            return None

    # --- the session's figures, once ---

    def pytest_speedbench_session_sections(self, config: pytest.Config, records: Sequence[Record]) -> dict[str, dict[str, Any]]:
        return session_speedups(records)

    def final_records(self) -> list[Record]:
        """The records with every session-level section added; computed once."""
        if self._final is None:
            records = self._journaled_records() or self.records
            sections: dict[str, dict[str, Any]] = {}
            try:
                results = self.config.hook.pytest_speedbench_session_sections(config=self.config, records=records)
            except Exception:  # noqa: BLE001 - a failing analysis must not lose the measured records
                self._report_failure("a session-level analysis")
                results = [session_speedups(records)]
            for result in results:
                for case_id, extra in (result or {}).items():
                    sections.setdefault(case_id, {}).update(extra)
            self._final = [r.with_sections(sections.get(r.case_id, {})) for r in records]
        return self._final

    def _report_failure(self, what: str) -> None:
        self.config.get_terminal_writer().line(f"speedbench: {what} failed:\n{traceback.format_exc()}", red=True)
        self.failed = True

    failed = False
    _collected_cases = 0  # speedbench cases this process collected (none on an xdist controller)

    def partial_reason(self) -> str | None:
        """Why this session did not run every case it collected, if it did not."""
        if self.interrupted:
            return f"interrupted by {self.interrupted}"
        session = self._session
        if session is None:
            return None
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            return "interrupted"
        stop = session.shouldstop or session.shouldfail
        return f"stopped early: {stop}" if stop else None

    # --- writing, once ---

    @pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_guard(self, session: pytest.Session) -> Generator[None, None, None]:
        """Around every session-end hook (engines' teardown, pytest-benchmark's JSON, the writers; pytest
        registers only methods named pytest_*, hence the name):
        from here signals are only noted, and pytest-benchmark is guarded against a case cut short
        and a failing disk."""
        self._session = session
        self._finishing = True
        _log_to_stderr_where_capture_closed()
        if not self.is_worker:
            benchjson.guard(self.config, self._benchmark_json_saved, self._benchmark_json_failed)
        return (yield)

    def _benchmark_json_saved(self, path: Path) -> None:
        self._benchmark_json_handled = True

    def _benchmark_json_failed(self, exc: ResultsWriteError) -> None:
        self._benchmark_json_handled = True  # tried with its statistics: not again without them
        self._write_failed(exc)

    def _write_failed(self, exc: ResultsWriteError) -> None:
        self.config.get_terminal_writer().line(f"speedbench: {exc}", red=True)
        self.failed = True

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
        """pytest-benchmark writes its JSON before any other session-finish hook: the final records go in."""
        if self.is_worker:
            return
        final = {r.case_id: r for r in self.final_records()}
        seen = set()
        for entry in output_json.get("benchmarks", []):
            record = final.get(entry.get("name"))
            if record is not None:
                entry.setdefault("extra_info", {})["speedbench"] = record.to_json()
                seen.add(record.case_id)
        # A case whose workload raised has no timing stats; its record still belongs in the file.
        output_json.setdefault("benchmarks", []).extend(benchmark_entry(r) for r in final.values() if r.case_id not in seen)
        output_json["speedbench_version"] = __version__
        output_json["speedbench_record_schema"] = SCHEMA_VERSION
        output_json["partial"] = self.partial_reason() is not None
        output_json["failed_without_record"] = self.failed_without_record
        output_json["partial_reason"] = self.partial_reason()

    def check_writable(self) -> None:
        """Fail now, not after hours of benchmarking, when a results file cannot be written."""
        for path in self._targets():
            try:
                ensure_writable(path)
            except ResultsWriteError as exc:
                raise pytest.UsageError(str(exc)) from None
        given = o.value(self.config, RUN_DIR)
        if given and self.resumed is None:
            folder = Path(str(given)).expanduser()
            if folder.exists() and not folder.is_dir():
                raise pytest.UsageError(f"--{RUN_DIR.name} {given}: that is a file, not a folder; name a folder "
                                        "(it is created if missing)")
            try:
                ensure_writable(folder / RESULTS_NAME)
            except ResultsWriteError as exc:
                raise pytest.UsageError(f"--{RUN_DIR.name} {given}: {exc}") from None

    def _targets(self) -> list[Path]:
        targets = []
        if settings_of(self.config).results_json:
            targets.append(Path(str(settings_of(self.config).results_json)))
        benchmark_json = getattr(self.config.option, "benchmark_json", None)
        if benchmark_json is not None:
            # pytest-benchmark gives an open file in older releases, a path in newer ones.
            targets.append(Path(benchmark_json) if isinstance(benchmark_json, (str, os.PathLike)) else Path(benchmark_json.name))
        return targets

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            return
        partial = self.partial_reason()
        if self._journal is not None:
            try:
                self._journal.end(partial is not None, partial, len(self.records))
            except OSError as exc:
                self._journal_failed(exc)
        if not self.records and not (partial and self._collected_cases):
            return  # nothing ran; an interrupted run still says so in every results file
        records = self.final_records()
        document = results_document(records, partial, self.failed_without_record)
        targets = [run_directory(self.config) / RESULTS_NAME] + self._targets()
        if self._benchmark_json_handled and getattr(self.config.option, "benchmark_json", None) is not None:
            targets.pop()  # pytest-benchmark wrote its own, with the final records in it
        for target in targets:
            try:
                atomic_write_json(target, document)
            except ResultsWriteError as exc:
                self.config.get_terminal_writer().line(f"speedbench: {exc}", red=True)
                self.failed = True
        try:
            if records:  # the extensions' files (report, sweeps) describe cases: none finished, none written
                self.config.hook.pytest_speedbench_records(config=self.config, records=records)
        except ResultsWriteError as exc:  # a full disk, a read-only folder: the reason is the message
            self._write_failed(exc)
        except Exception:  # noqa: BLE001 - a failing writer must not lose the results already written
            self._report_failure("a session-end writer")
        failed_before = [r for r in records if r.outcome == "failed" and self.resumed and r.case.nodeid in self.resumed.records]
        if self.failed or failed_before:
            session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        partial = self.partial_reason()
        if self.records:
            records = self.final_records()
            terminalreporter.section("speedbench")
            terminalreporter.write(render_table(records, width=max(terminalreporter._tw.fullwidth, 160),
                                                al_convention=settings_of(self.config).al_convention))
            self.config.hook.pytest_speedbench_terminal_summary(
                config=self.config, records=records, terminalreporter=terminalreporter
            )
        for line in self._summary_lines(partial):
            terminalreporter.write_line(line, red=partial is not None or self._journal_problem is not None)

    def _summary_lines(self, partial: str | None) -> list[str]:
        lines = []
        run_dir = self.config.stash.get(RUN_DIR_KEY, None)
        where = display(run_dir, self.config) if run_dir is not None else None
        if self.resumed is not None:
            lines.append(f"speedbench: resumed {where}: {len(self.resumed.records)} case(s) from its journal, "
                         f"{len(self.records) - len(self.resumed.records)} run now")
        if partial is not None and (self.records or self._collected_cases):
            written = f"in {where}/{RESULTS_NAME} and {where}/{JOURNAL_NAME}" if where else "nowhere (no case finished)"
            lines.append(f"speedbench: PARTIAL results ({partial}): {len(self.records)} finished case(s) {written}"
                         + (f"; finish the run with --{RESUME.name} {where}" if where else ""))
        for failure in self.failed_without_record:
            lines.append(f"speedbench: {failure['nodeid']} failed before measuring ({failure['when']}): {failure['error']}")
        if self._journal_problem is not None:
            lines.append(f"speedbench: the journal could not be used: {self._journal_problem}")
        if self.later_signals:
            lines.append(f"speedbench: {', '.join(self.later_signals)} after the first interrupt or during the "
                         "session's end: noted; the engine was shut down and the results written first")
        return lines
