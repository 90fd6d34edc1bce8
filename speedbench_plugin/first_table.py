"""What a session will cost before it starts, and whether SD paid once it ends.

- Header: the preset's description (``make bench`` runs the ``first-table`` preset, which says what
  it trims), then, once the cases are collected, how many will run and a rough estimate of how long.
- Closing lines: per drafter, one sentence on whether speculative decoding paid on this machine,
  from the records' own figures: AL, step latency p50 with drafting and without (the ``none``
  drafter's case of the same workload), and the ``speedup_vs_none`` section the record carries.

The estimate is a model, not a measurement: seconds per output token and per engine start, taken
from runs of the embedded SmolLM2-135M on vLLM-CPU on a shared 2-core machine (below); another
machine, model or engine differs, and the line says what it assumed.
"""
from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from typing import Any

import pytest

from speedbench_plugin import presets
from speedbench_plugin.record import Record, none_baseline_key
from speedbench_plugin.settings import PRESET, Settings, settings_of

# Seconds per output token of one request at concurrency 1, by drafter method, and per engine start:
# vLLM-CPU 0.32, SmolLM2-135M, 2 cores (make bench of 2026-12-04: medians 0.09 s none, 0.13 s
# ngram; the truncated draft model 2-3x none; see the measurement notes). An engine start took
# 3-5 min there at load average ~23 (other jobs); 90 s is for a machine to itself.
SECONDS_PER_TOKEN = {"none": 0.10, "ngram": 0.13, "draft": 0.25}
SECONDS_PER_TOKEN_OTHER = 0.15
ENGINE_START_S = 90.0
TURNS_PER_QUESTION = 1.2  # the offline split: ~20% of questions have a second (or third) turn
EMBEDDED_PROMPTS_PER_CATEGORY = 2


def pytest_report_header(config: pytest.Config) -> list[str]:
    name = config.getoption(PRESET.dest) or None
    if not name:
        return []
    try:
        description = presets.load_preset(str(name)).get("description")
    except (presets.PresetError, OSError):
        return []  # the lead plugin reports a bad preset
    return [f"speedbench preset {name}: {description}"] if description else []


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput") or session.config.option.collectonly:
        return
    cases = [item for item in session.items if "sb_case" in getattr(item, "fixturenames", ())]  # measured cases
    if not cases:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(estimate_line(session.config, cases))


def estimate_line(config: pytest.Config, cases: Sequence[pytest.Item]) -> str:
    settings = settings_of(config)
    methods = [d.method for d in settings.drafters]
    per_case_prompts = _prompts_per_case(settings, cases)
    tokens = settings.max_tokens * settings.rounds * per_case_prompts * TURNS_PER_QUESTION
    seconds = len(methods) * ENGINE_START_S
    for item in cases:
        drafter = getattr(item, "callspec", None) and item.callspec.params.get("sb_engine")  # type: ignore[attr-defined]
        method = getattr(drafter, "method", "none")
        seconds += tokens * SECONDS_PER_TOKEN.get(method, SECONDS_PER_TOKEN_OTHER)
    return (f"speedbench: {len(cases)} case(s) to run ({len(methods)} drafter(s), {per_case_prompts} prompt(s) per case, "
            f"{settings.max_tokens} output tokens, {settings.rounds} round(s)); estimated ~{max(1, round(seconds / 60))} min "
            f"(a rough model: {ENGINE_START_S:.0f} s per engine start, 0.10-0.25 s per output token per request, "
            "as measured with the embedded model on vLLM-CPU on 2 cores; other machines and models differ)" + _load_note())


def _load_note() -> str:
    """Other jobs stretch every figure above; say so when the machine is busier than its cores."""
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    return f"; load average now {load:.1f} on {cores} core(s): expect longer" if load > cores else ""


def _prompts_per_case(settings: Settings, cases: Sequence[pytest.Item]) -> int:
    if settings.num_requests is not None:
        categories = max(1, len({item.callspec.params.get("sb_category") for item in cases
                                 if hasattr(item, "callspec")}))
        return max(1, round(settings.num_requests / categories))
    return EMBEDDED_PROMPTS_PER_CATEGORY


def pytest_speedbench_terminal_summary(config: pytest.Config, records: Sequence[Record], terminalreporter: Any) -> None:
    for line in does_sd_pay(records):
        terminalreporter.write_line(line)


def does_sd_pay(records: Sequence[Record]) -> list[str]:
    """One sentence per drafter: did SD pay here, and why, from the records' own figures (medians
    over the drafter's cases that have a ``none`` case of the same workload)."""
    plain = {none_baseline_key(r.case): r for r in records if not r.case.drafter.enabled}
    by_drafter: dict[str, list[tuple[Record, Record]]] = {}
    for record in records:
        base = plain.get(none_baseline_key(record.case))
        if record.case.drafter.enabled and base is not None and record.section("speedup_vs_none"):
            by_drafter.setdefault(record.case.drafter.id, []).append((record, base))
    lines = []
    for drafter, pairs in by_drafter.items():
        al = _median([r.acceptance.acceptance_length for r, _ in pairs])
        step_sd = _median([r.speed.step_latency_p50_s for r, _ in pairs])
        step_plain = _median([b.speed.step_latency_p50_s for _, b in pairs])
        measured = _median([r.section("speedup_vs_none").get("output_tps") for r, _ in pairs])
        proxy = _median([r.section("speedup_vs_none").get("proxy") for r, _ in pairs])
        if al is None or step_sd is None or step_plain is None or measured is None or proxy is None:
            lines.append(f"speedbench: {drafter}: too few figures to say whether SD paid here (AL {al}, p50 step latency "
                         f"{step_sd} s with drafting and {step_plain} s without, output speedup {measured})")
            continue
        head = (f"speedbench: {drafter}: SD {'paid' if measured > 1 else 'did not pay'} here (output speedup "
                f"{measured:.2f}x, median of {len(pairs)} case(s)): a step with drafting took {_ms(step_sd)} "
                f"against {_ms(step_plain)} without (p50 step latency) and emitted {al:.2f} tokens (AL)")
        if (proxy > 1) == (measured > 1):
            why = (", which more than makes up for the dearer step" if proxy > 1
                   else ", too few to make up for the dearer step")
        elif proxy > 1:
            why = (", which should make up for the dearer step, but time outside the decode steps (prefill, "
                   "scheduling, the stream) took the gain")
        else:
            why = ", too few to make up for the dearer step by the decode steps alone; the gain came from elsewhere"
        lines.append(f"{head}{why} (the paper's proxy t_ar*AL/t_sd: {proxy:.2f}x).")
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]  # NaN: the figure could not be computed
    return statistics.median(present) if present else None
