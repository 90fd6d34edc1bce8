"""pytest plugin of the regression gate: ``--speedbench-save-baseline`` and ``--speedbench-compare``.

Every process loads the baseline itself (pytest-xdist workers judge the cases they run); the
controller writes a new baseline from the final records. A case's verdict is a ``comparison``
section of its record, which travels with the test report to the controller, where the summary
is printed. Heavy imports (scipy, via the statistics) happen only when the gate is active.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from speedbench_plugin.compare.judge import failure_message, moved_metrics
from speedbench_plugin.compare.settings import CompareSettings, add_options
from speedbench_plugin.settings import NUM_REQUESTS, ROUNDS, SETTINGS_KEY

if TYPE_CHECKING:
    from speedbench_plugin.compare import baseline as bl
    from speedbench_plugin.record import MeasuredRound, Record

PLUGIN_NAME = "speedbench-compare"
# The embedded CPU default runs 2 prompts per category: too few pairs for the acceptance statistics.
GATE_PER_CATEGORY = 6


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)  # after the lead plugin has stashed its Settings
def pytest_configure(config: pytest.Config) -> None:
    settings = CompareSettings.from_config(config)
    if not settings.active:
        return
    from speedbench_plugin.compare import baseline as bl

    baseline = None
    if settings.compare:
        try:
            baseline = bl.load(bl.resolve(settings.compare, config.rootpath, must_exist=True))
        except bl.BaselineError as exc:
            raise pytest.UsageError(f"--speedbench-compare: {exc}") from None
    choice = judgeable_workload(config, settings)
    config.pluginmanager.register(ComparePlugin(config, settings, baseline, choice), PLUGIN_NAME)


def judgeable_workload(config: pytest.Config, settings: CompareSettings) -> list[str]:
    """Where the user left the workload to the suite, choose one the gate can judge; never shrink
    what the user asked for. Returns what was chosen and why, for the session header."""
    lead = config.stash[SETTINGS_KEY]
    changes: dict[str, Any] = {}
    said = []
    if ROUNDS.name not in lead.explicit and lead.rounds < settings.thresholds.min_rounds:
        changes["rounds"] = settings.thresholds.min_rounds
        said.append(f"{settings.thresholds.min_rounds} rounds per case (speed is judged only with "
                    f"{settings.thresholds.min_rounds}+ rounds on both sides; --speedbench-rounds 1 judges acceptance only, "
                    "faster)")
    elif lead.rounds < settings.thresholds.min_rounds:
        said.append(f"{lead.rounds} round(s) as asked: speed will not be judged (needs {settings.thresholds.min_rounds})")
    embedded_sample = lead.model is None and lead.dataset is None
    if NUM_REQUESTS.name not in lead.explicit and embedded_sample:
        changes["min_per_category"] = GATE_PER_CATEGORY
        said.append(f"{GATE_PER_CATEGORY} prompts per category (acceptance needs {settings.thresholds.min_pairs}+ paired "
                    "requests per case; the embedded default runs 2)")
    elif lead.num_requests is not None:
        said.append(f"{lead.num_requests} requests as asked (acceptance needs {settings.thresholds.min_pairs}+ paired "
                    "requests per case)")
    if changes:
        config.stash[SETTINGS_KEY] = dataclasses.replace(lead, **changes)
    return said


def _display(path: Any, config: pytest.Config) -> str:
    try:
        return str(path.relative_to(config.rootpath))
    except ValueError:
        return str(path)


class ComparePlugin:
    def __init__(self, config: pytest.Config, settings: CompareSettings, baseline: bl.Baseline | None,
                 choice: list[str]) -> None:
        from speedbench_plugin.compare.matching import index_by_key

        self.config = config
        self.settings = settings
        self.baseline = baseline
        self.choice = choice
        self.index = index_by_key(baseline.cases.values(), settings.match) if baseline else {}
        self.family_size = max(1, len(self.index))  # refined once the session's cases are collected
        self.saved: tuple[str, int, list[str]] | None = None
        self.nothing_judged = False

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        what = "compare against " + _display(self.baseline.path, config) if self.baseline else "save a baseline"
        return [f"speedbench gate ({what}): " + ("; ".join(self.choice) if self.choice else "workload as given")]

    # --- per case (on whichever process runs it) ---

    @pytest.hookimpl(trylast=True)  # after -k/-m deselection: count the cases that will be judged
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if not self.index:
            return
        from speedbench_plugin.compare.matching import match_key

        compared = 0
        for item in items:
            drafter = getattr(getattr(item, "callspec", None), "params", {}).get("sb_engine")
            if drafter is None:
                continue
            if match_key(item.name, getattr(drafter, "id", None), self.settings.match) in self.index:
                compared += 1
        self.family_size = max(1, compared)

    def pytest_speedbench_update_record(self, config: pytest.Config, record: Record,
                                        rounds: Sequence[MeasuredRound]) -> dict[str, Any] | None:
        if self.baseline is None:
            return None
        from speedbench_plugin.compare import baseline as bl
        from speedbench_plugin.compare import judge
        from speedbench_plugin.compare.matching import record_key

        where = _display(self.baseline.path, config)
        candidates = self.index.get(record_key(record, self.settings.match), [])
        if len(candidates) != 1:
            reason = (
                f"not in the baseline (no case {record_key(record, self.settings.match)}"
                + ("; a changed drafter needs --speedbench-compare-match drafter-method)" if self.settings.match == "id" else ")")
                if not candidates
                else f"ambiguous: {len(candidates)} baseline cases match ({', '.join(c.case_id for c in candidates)})"
            )
            comparison = judge.CaseComparison(record.case_id, None, where, judge.NOT_COMPARABLE, notes=[reason])
            return {"comparison": comparison.to_dict()}
        comparison = judge.compare_case(
            record, candidates[0], baseline_path=where, thresholds=self.settings.thresholds,
            family_size=self.family_size, current_hardware=bl.hardware_fingerprint(),
            baseline_hardware=self.baseline.hardware, force=self.settings.force,
        )
        return {"comparison": comparison.to_dict()}

    def pytest_speedbench_check(self, config: pytest.Config, record: Record) -> list[str] | None:
        comparison = record.section("comparison")
        if not comparison or comparison["status"] != "regressed":
            return None
        return [failure_message(comparison)]

    # --- controller ---

    def pytest_speedbench_records(self, config: pytest.Config, records: Sequence[Record]) -> None:
        if not self.settings.save_baseline:
            return
        from speedbench_plugin.cache import atomic_write_json
        from speedbench_plugin.compare import baseline as bl
        from speedbench_plugin.reports import results_document

        target = bl.resolve(self.settings.save_baseline, config.rootpath, must_exist=False)
        document = bl.baseline_document(records, results_document(records), _benchmark_stats(config))
        atomic_write_json(target, document)
        warnings = []
        failed = [r.case_id for r in records if r.outcome == "failed"]
        if failed:
            warnings.append(f"{len(failed)} case(s) failed and were saved as measured: {', '.join(failed[:5])}")
        few = sorted({r.case.rounds for r in records if r.case.rounds < self.settings.thresholds.min_rounds})
        if few:
            warnings.append(
                f"rounds {', '.join(map(str, few))} < {self.settings.thresholds.min_rounds}: throughput and latency "
                "will not be judged against this baseline (save with --speedbench-rounds "
                f"{self.settings.thresholds.min_rounds} or more)"
            )
        self.saved = (_display(target, config), len(records), warnings)

    def pytest_speedbench_terminal_summary(self, config: pytest.Config, records: Sequence[Record], terminalreporter: Any) -> None:
        if self.baseline is not None:
            terminalreporter.section("speedbench compare")
            lines = summary_lines(records, self.baseline, self.index, self.settings, config)
            for line in lines:
                terminalreporter.line(line)
            comparisons = [r.section("comparison") for r in records if r.section("comparison")]
            if comparisons and all(c["status"] == "not comparable" for c in comparisons):
                self.nothing_judged = True
                terminalreporter.line(
                    "speedbench: warning: the comparison judged NOTHING: every case was not comparable (reasons above). "
                    "Change what they name (rounds, prompts, the drafter or --speedbench-compare-match); "
                    "--speedbench-compare-strict makes this an error.", yellow=True, bold=True)
        if self.saved is not None:
            path, count, warnings = self.saved
            terminalreporter.line(f"speedbench: baseline saved to {path} ({count} cases)")
            for warning in warnings:
                terminalreporter.line(f"speedbench: warning: {warning}", yellow=True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput") or self.baseline is None or not self.settings.strict:
            return
        reports = self.config.pluginmanager.getplugin("speedbench-reports")
        records = reports.final_records() if reports is not None else []
        comparisons = [r.section("comparison") for r in records if r.section("comparison")]
        if not comparisons or all(c["status"] == "not comparable" for c in comparisons):
            self.nothing_judged = True
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _benchmark_stats(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """pytest-benchmark's round timings by test name (absent under xdist, where it is off)."""
    session = getattr(config, "_benchmarksession", None)
    out: dict[str, dict[str, Any]] = {}
    try:
        for bench in getattr(session, "benchmarks", None) or []:
            out[bench.name] = {**bench.stats.as_dict(), "data": list(bench.stats.data)}
    except Exception:  # noqa: BLE001 - private API: the baseline is complete without it
        return {}
    return out


# --- words ----------------------------------------------------------------------------------


def _holm_borderline(comparisons: list[dict[str, Any]], alpha: float) -> list[tuple[str, str]]:
    """Metrics the session-wide Holm procedure would flag that the per-case bound did not."""
    from speedbench_plugin.compare import judge, stats

    out = []
    for kind in ("acceptance", "speed"):
        tests = [
            (c["case_id"], m) for c in comparisons for m in c["metrics"]
            if m["kind"] == kind and m.get("p_worse") is not None and m["status"] in (judge.UNCHANGED, judge.REGRESSED, judge.IMPROVED)
        ]
        adjusted = stats.holm_adjusted([m["p_worse"] for _, m in tests])
        for (case_id, m), p in zip(tests, adjusted):
            if p <= alpha and m.get("beyond_worse") and m["status"] != judge.REGRESSED:
                out.append((case_id, m["metric"]))
    return out


def _named(comparison: dict[str, Any]) -> str:
    """The case id, and the baseline's when matching did not use the id."""
    other = comparison.get("baseline_case_id")
    case_id = str(comparison["case_id"])
    return case_id + (f" (vs {other})" if other and other != case_id else "")


def summary_lines(records: Sequence[Record], baseline: bl.Baseline, index: dict[str, list[Record]],
                  settings: CompareSettings, config: pytest.Config) -> list[str]:
    from speedbench_plugin.compare import judge
    from speedbench_plugin.compare.matching import record_key

    comparisons = [r.section("comparison") for r in records if r.section("comparison")]
    current_engines = sorted({f"{r.case.engine} {r.case.engine_version}" for r in records})
    lines = [
        (f"baseline {_display(baseline.path, config)} (saved {baseline.created}, speedbench {baseline.speedbench_version}): "
         f"engine {', '.join(baseline.engines)}; current: engine {', '.join(current_engines)}; match by {settings.match}")
    ]
    by_status: dict[str, list[dict[str, Any]]] = {status: [] for status in judge.STATUS_ORDER}
    for c in comparisons:
        by_status[c["status"]].append(c)
    lines.append(f"{len(comparisons)} cases: " + ", ".join(f"{len(by_status[s])} {s}" for s in judge.STATUS_ORDER))
    for status in (judge.REGRESSED, judge.IMPROVED):
        for c in by_status[status]:
            lines.append(f"{status.upper()} {_named(c)}")
            lines += [f"    {m['status']}: {judge.describe_metric(m, c['confidence'])}" for m in moved_metrics(c)]
    for status in (judge.UNCHANGED, judge.IDENTICAL):
        if by_status[status]:
            lines.append(f"{status}: " + ", ".join(_named(c) for c in by_status[status]))
        if config.option.verbose > 0:  # -v: the figures behind every verdict, not only the failing ones
            for c in by_status[status]:
                lines.append(f"  {c['case_id']}")
                lines += [f"    {judge.describe_metric(m, c['confidence'])}" for m in c["metrics"]
                          if m["status"] != judge.NOT_COMPARABLE]
    for c in by_status[judge.NOT_COMPARABLE]:
        # Every reason that applies, not only the first: pairs, rounds, fingerprint, drafter.
        reasons = judge.not_judged_reasons(c) + [n for n in c["notes"] if n not in judge.not_judged_reasons(c)]
        lines.append(f"not comparable {_named(c)}: {'; '.join(reasons) or 'no reason recorded'}")
    # Partial verdicts: acceptance judged, speed not (or the reverse), said once per reason.
    partial: dict[str, list[str]] = {}
    for c in comparisons:
        if c["status"] == judge.NOT_COMPARABLE:
            continue
        for reason in judge.not_judged_reasons(c) + list(c["notes"]):
            cases = partial.setdefault(reason, [])
            if c["case_id"] not in cases:
                cases.append(c["case_id"])
    for reason, cases in partial.items():
        lines.append(f"note: {reason} [{len(cases)} case(s)]")
    for case_id, metric in _holm_borderline(comparisons, settings.thresholds.alpha):
        lines.append(
            f"borderline {case_id}: {metric} passes the per-case bound but the session-wide Holm procedure "
            "would flag it; rerun with more requests or rounds"
        )
    run_keys = {record_key(r, settings.match) for r in records}
    missing = sorted(k for k in index if k not in run_keys)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        lines.append(f"{len(missing)} baseline case(s) not run: {shown}")
    return lines


__all__ = ["ComparePlugin", "failure_message", "summary_lines"]
