"""``--speedbench-report PATH``: the report of this session's final records, written at the end of the
run (on the controller, once), its path printed as the run's last line.

PATH ending in ``.md`` gives the Markdown summary, any other the HTML report; ``run`` writes
``report.html`` into the run's own folder (``results/<stamp>-<label>/``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin import options as o

if TYPE_CHECKING:
    from speedbench_plugin.record import Record

IN_RUN_FOLDER = "run"
REPORT = o.Option("speedbench-report",
                  "write a report of this run's records at the end: PATH.html (one self-contained HTML file), PATH.md "
                  f"(a Markdown summary), or '{IN_RUN_FOLDER}' for report.html in the run's folder")
PLUGIN_NAME = "speedbench-report-writer"


def pytest_addoption(parser: pytest.Parser) -> None:
    o.add_options(parser, (REPORT,))


def pytest_configure(config: pytest.Config) -> None:
    target = o.value(config, REPORT)
    if target and not hasattr(config, "workerinput"):
        config.pluginmanager.register(ReportWriter(config, str(target)), PLUGIN_NAME)


class ReportWriter:
    def __init__(self, config: pytest.Config, target: str) -> None:
        self.config = config
        self.target = target
        self.written: Path | None = None

    def path(self) -> Path:
        if self.target == IN_RUN_FOLDER:
            from speedbench_plugin.rundir import run_directory

            return run_directory(self.config) / "report.html"
        path = Path(self.target).expanduser()
        return path if path.is_absolute() else Path(self.config.invocation_params.dir) / path

    def pytest_speedbench_records(self, config: pytest.Config, records: Sequence[Record]) -> None:
        from speedbench_plugin.report import write_report
        from speedbench_plugin.report.model import Report, Run
        from speedbench_plugin.reports import FAILED_WITHOUT_RECORD_KEY, results_document
        from speedbench_plugin.settings import settings_of

        failures = config.stash.get(FAILED_WITHOUT_RECORD_KEY, [])
        document = results_document(records, failed_without_record=failures)
        source = settings_of(config).results_json or getattr(config.option, "benchmark_json", None)
        label = Path(str(getattr(source, "name", source))).stem if source else "this run"
        run = Run(label, Path(str(getattr(source, "name", source) or "this session")), "this session", tuple(records),
                  document["datetime"], False, dict(document["machine_info"]),
                  speedbench_version=document["speedbench_version"],
                  failed_without_record=tuple((f["nodeid"], f["error"]) for f in failures))
        self.written = write_report(Report.of([run]), self.path())

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.written is None:
            return
        from speedbench_plugin.rundir import display

        line = f"speedbench report: {display(self.written, config)}"
        writer: Any = config.get_terminal_writer() if config.pluginmanager.has_plugin("terminalreporter") else None
        if writer is not None:
            writer.line(line, bold=True)
        else:
            print(line)
