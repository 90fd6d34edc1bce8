"""Collect records from reports (on the xdist controller too), write results, print the table."""
from __future__ import annotations

import datetime as dt
import io
import math
import os
import platform
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin import __version__
from speedbench_plugin.cache import atomic_write_json

REPORT_PROPERTY = "speedbench"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _baseline_key(record: dict[str, Any]) -> tuple:
    labels = tuple(record.get(key) for key in ("split", "category", "bucket", "tier"))
    return labels + (record.get("engine"), record.get("concurrency"), record.get("max_tokens"))


def speedups(records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Output-TPS and user-TPS ratios against the ``none`` drafter of the same case and load."""
    plain = {_baseline_key(r): r for r in records if r.get("drafter_id") == "none"}
    def ratio(record: dict[str, Any], base: dict[str, Any], key: str) -> float | None:
        a, b = record.get(key), base.get(key)
        return a / b if a and b else None

    out: dict[str, dict[str, float | None]] = {}
    for record in records:
        base = plain.get(_baseline_key(record))
        if base is None or record.get("drafter_id") == "none":
            continue
        out[record["case_id"]] = {
            "baseline_case_id": base["case_id"],
            "output_tps": ratio(record, base, "output_tps"),
            "user_tps": ratio(record, base, "user_tps_median"),
        }
    return out


def results_document(records: list[dict[str, Any]], config: pytest.Config) -> dict[str, Any]:
    """pytest-benchmark's JSON shape, so its tooling reads the suite's own file too."""
    return {
        "machine_info": {"node": platform.node(), "machine": platform.machine(), "python_version": platform.python_version()},
        "speedbench_version": __version__,
        "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "benchmarks": [
            {"name": r["case_id"], "fullname": r.get("nodeid", r["case_id"]), "group": r.get("split"), "extra_info": {"speedbench": r}}
            for r in records
        ],
    }


def render_table(records: list[dict[str, Any]], width: int = 160) -> str:
    from rich.console import Console
    from rich.table import Table

    gains = speedups(records)
    table = Table(title="speedbench: speculative decoding per case", title_justify="left")
    for name, justify in (
        ("case", "left"), ("drafter", "left"), ("conc", "right"), ("reqs", "right"), ("AL", "right"),
        ("AL drafting", "right"), ("AR", "right"), ("CAR all steps", "left"), ("out tok/s", "right"),
        ("user tok/s", "right"), ("TTFT s", "right"), ("speedup", "right"), ("AL vs ctr", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in sorted(records, key=lambda r: (r.get("split", ""), str(r.get("category") or r.get("bucket")), r.get("drafter_id", ""))):
        label = r.get("category") or f"{r.get('bucket')}/{r.get('tier')}"
        fid = r.get("fidelity") or {}
        gain = gains.get(r["case_id"], {}).get("output_tps")
        table.add_row(
            str(label), r.get("drafter_id", "?"), _fmt(r.get("concurrency")), _fmt(r.get("num_requests")),
            _fmt(r.get("acceptance_length")), _fmt(r.get("acceptance_length_drafting_steps")),
            _fmt(r.get("acceptance_rate")),
            " ".join(_fmt(v) for v in r.get("conditional_acceptance_rates") or []) or "-",
            _fmt(r.get("output_tps"), 1), _fmt(r.get("user_tps_median"), 1), _fmt(r.get("ttft_median_s"), 3),
            f"{gain:.2f}x" if gain else "-",
            f"{fid['rel_diff'] * 100:+.2f}%" if fid.get("available") and fid.get("rel_diff") is not None else "-",
        )
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(table)
    return buffer.getvalue()


class ReportsPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == REPORT_PROPERTY and isinstance(value, dict):
                self.records.append({**value, "outcome": report.outcome, "nodeid": report.nodeid})

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or not self.records:
            return
        gains = speedups(self.records)
        for record in self.records:
            record["speedup_vs_none"] = gains.get(record["case_id"])
        self._write_results()
        try:
            self.config.hook.pytest_speedbench_records(config=self.config, records=self.records)
        except Exception as exc:  # noqa: BLE001 - a failing report must not lose the results
            self.config.get_terminal_writer().line(f"speedbench: a session-end report failed: {exc!r}", red=True)
            session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED
            return
        self._write_results()  # again: session-end hooks may have added to the records

    def _write_results(self) -> None:
        document = results_document(self.records, self.config)
        from speedbench_plugin.plugin import settings_of

        target = settings_of(self.config).results_json
        if target:
            atomic_write_json(target, document)
        benchmark_json = getattr(self.config.option, "benchmark_json", None)
        if benchmark_json is not None:
            # pytest-benchmark gives an open file in older releases, a path in newer ones.
            path = Path(benchmark_json) if isinstance(benchmark_json, (str, os.PathLike)) else Path(benchmark_json.name)
            if not path.exists() or not path.stat().st_size:
                # pytest-benchmark writes nothing under xdist; keep the promised file valid.
                atomic_write_json(path, document)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not self.records:
            return
        terminalreporter.section("speedbench")
        terminalreporter.write(render_table(self.records, width=max(terminalreporter._tw.fullwidth, 160)))
        self.config.hook.pytest_speedbench_terminal_summary(
            config=self.config, records=self.records, terminalreporter=terminalreporter
        )
