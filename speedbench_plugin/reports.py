"""Collect records from reports (on the xdist controller too), add the session's cross-case figures
once, then write every output from the same final records: the suite's results file, pytest-
benchmark's JSON (with and without xdist, one schema), the extensions' files, the table."""
from __future__ import annotations

import datetime as dt
import io
import math
import os
import platform
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin import __version__
from speedbench_plugin.cache import ResultsWriteError, atomic_write_json, ensure_writable
from speedbench_plugin.record import SCHEMA_VERSION, Record, session_speedups
from speedbench_plugin.settings import settings_of

REPORT_PROPERTY = "speedbench"


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


def results_document(records: Sequence[Record]) -> dict[str, Any]:
    """pytest-benchmark's JSON shape, so its tooling reads the suite's own file too."""
    return {
        "machine_info": {"node": platform.node(), "machine": platform.machine(), "python_version": platform.python_version()},
        "speedbench_version": __version__,
        "speedbench_record_schema": SCHEMA_VERSION,
        "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "benchmarks": [benchmark_entry(r) for r in records],
    }


def _al_cell(record: Record) -> str:
    acc = record.acceptance
    mark = "*" if acc.histogram_source == "stream" and acc.stream_merged else ""
    return _fmt(acc.acceptance_length) + mark


def _fidelity_cell(record: Record) -> str:
    check = record.fidelity.get("per_request") or record.fidelity.get("global")
    if check is None:
        return "-"
    short = {"exact": "exact", "within the end-cut bound": "≤cut", "merged steps": "merged", "unexplained": "GAP"}
    return f"{short.get(check.verdict, check.verdict)} {check.rel_diff * 100:+.2f}%" if check.rel_diff is not None else short.get(check.verdict, "?")


def render_table(records: Sequence[Record], width: int = 160) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="speedbench: speculative decoding per case", title_justify="left")
    columns = (
        ("case", "left"), ("drafter", "left"), ("conc", "right"), ("reqs", "right"), ("AL", "right"),
        ("AL drafting", "right"), ("AR", "right"), ("CAR", "left"), ("out tok/s", "right"),
        ("user tok/s", "right"), ("TTFT s", "right"), ("speedup", "right"), ("stream vs ctr", "right"),
        ("efficiency", "right"), ("client µs/out", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    ordered = sorted(records, key=lambda r: (r.case.split, r.case.label, r.case.drafter.id, r.case.concurrency))
    for r in ordered:
        gain = (r.section("speedup_vs_none") or {}).get("output_tps")
        efficiency = _fmt(r.speed.harness_efficiency) + (" CLIENT-BOUND" if r.speed.client_bound else "")
        table.add_row(
            r.case.label, r.case.drafter.id, str(r.case.concurrency), str(len(r.requests)),
            _al_cell(r), _fmt(r.acceptance.acceptance_length_drafting_steps), _fmt(r.acceptance.acceptance_rate),
            " ".join(_fmt(v) for v in r.acceptance.conditional_acceptance_rates) or "-",
            _fmt(r.speed.output_tps, 1), _fmt(r.speed.user_tps_median, 1), _fmt(r.speed.ttft_median_s, 3),
            f"{gain:.2f}x" if gain else "-", _fidelity_cell(r), efficiency if r.speed.harness_efficiency is not None else "-",
            _fmt(r.speed.client_cpu_us_per_output, 1),
        )
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(table)
    notes = []
    merged = [r for r in ordered if r.acceptance.stream_merged and r.acceptance.histogram_source == "stream"]
    if merged:
        worst = max(merged, key=lambda r: r.acceptance.merge_rate or 0)
        notes.append(f"* the stream merged engine steps ({len(merged)} case(s), up to {100 * (worst.acceptance.merge_rate or 0):.1f}% "
                     "of chunks) and the engine gave no per-step record: AL, pp and CAR from the stream overstate "
                     "acceptance. See README \"Merged steps\" for making the stream exact.")
    sourced = sorted({r.acceptance.histogram_source for r in ordered if r.case.k})
    if sourced:
        notes.append(f"AL/pp/CAR step histogram from: {', '.join(sourced)}; AR and AL drafting from counters: "
                     f"{', '.join(sorted({r.counters.source or 'none' for r in ordered if r.case.k}))}")
    gaps = [r for r in ordered if any(c.verdict == "unexplained" for c in r.fidelity.values())]
    if gaps:
        notes.append(f"GAP: stream and counters disagree beyond what end cuts and merges explain in {len(gaps)} case(s) "
                     f"({', '.join(r.case_id for r in gaps[:3])}); --speedbench-strict-fidelity fails them")
    return buffer.getvalue() + "".join(f"{note}\n" for note in notes)


class ReportsPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[Record] = []
        self._final: list[Record] | None = None
        self._benchmark_json_written = False

    # --- collecting ---

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == REPORT_PROPERTY and isinstance(value, dict):
                record = Record.from_json(value, where=report.nodeid).with_outcome(report.outcome)
                self.records.append(record)

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # --- the session's figures, once ---

    def pytest_speedbench_session_sections(self, config: pytest.Config, records: Sequence[Record]) -> dict[str, dict[str, Any]]:
        return session_speedups(records)

    def final_records(self) -> list[Record]:
        """The records with every session-level section added; computed once."""
        if self._final is None:
            sections: dict[str, dict[str, Any]] = {}
            try:
                results = self.config.hook.pytest_speedbench_session_sections(config=self.config, records=self.records)
            except Exception:  # noqa: BLE001 - a failing analysis must not lose the measured records
                self._report_failure("a session-level analysis")
                results = [session_speedups(self.records)]
            for result in results:
                for case_id, extra in (result or {}).items():
                    sections.setdefault(case_id, {}).update(extra)
            self._final = [r.with_sections(sections.get(r.case_id, {})) for r in self.records]
        return self._final

    def _report_failure(self, what: str) -> None:
        self.config.get_terminal_writer().line(f"speedbench: {what} failed:\n{traceback.format_exc()}", red=True)
        self.failed = True

    failed = False

    # --- writing, once ---

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
        self._benchmark_json_written = True

    def check_writable(self) -> None:
        """Fail now, not after hours of benchmarking, when a results file cannot be written."""
        for path in self._targets():
            try:
                ensure_writable(path)
            except ResultsWriteError as exc:
                raise pytest.UsageError(str(exc)) from None

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
        if self.is_worker or not self.records:
            return
        records = self.final_records()
        document = results_document(records)
        try:
            if settings_of(self.config).results_json:
                atomic_write_json(self._targets()[0], document)
            if getattr(self.config.option, "benchmark_json", None) is not None and not self._benchmark_json_written:
                # pytest-benchmark writes nothing under xdist or --benchmark-disable: the same schema here.
                atomic_write_json(self._targets()[-1], document)
        except ResultsWriteError as exc:
            self.config.get_terminal_writer().line(f"speedbench: {exc}", red=True)
            self.failed = True
        try:
            self.config.hook.pytest_speedbench_records(config=self.config, records=records)
        except Exception:  # noqa: BLE001 - a failing writer must not lose the results already written
            self._report_failure("a session-end writer")
        if self.failed:
            session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not self.records:
            return
        records = self.final_records()
        terminalreporter.section("speedbench")
        terminalreporter.write(render_table(records, width=max(terminalreporter._tw.fullwidth, 160)))
        self.config.hook.pytest_speedbench_terminal_summary(
            config=self.config, records=records, terminalreporter=terminalreporter
        )
