"""The regression gate end to end through pytester, on FakeEngine (synthetic, deterministic counts).

Baselines are written by real runs, then edited where a test needs one case to differ (FakeEngine's
arguments are global to the session, so a per-case difference is injected in the baseline).
"""
from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

ITEMS = [WorkItem(f"q{i}", "demo", prompt_ids=tuple(range(5 + i))) for i in range(N_ITEMS)]

@pytest.mark.qualitative
@pytest.mark.parametrize("label", ["alpha", "beta"])
def test_case(sb_case, sb_concurrency, label):
    sb_case.run(ITEMS, split="qualitative", labels={"category": label}, concurrency=sb_concurrency)
"""
INI = "[pytest]\naddopts = --strict-markers\nmarkers =\n    qualitative: q\n"
DROPPED = "test_case[fake-ngram_k3-beta]"


def _plugin_args() -> list[str]:
    """Load the gate explicitly only while it is not installed as a pytest11 entry point."""
    installed = any(
        ep.value == "speedbench_plugin.compare.plugin" for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "speedbench_plugin.compare.plugin"]


def _common(model: str, *drafters: str, n_items: int = 12) -> list[str]:
    # --opt=value: a bare path after an option would count as a test path when pytest picks its rootdir.
    args = [*_plugin_args(), "-p", "no:cacheprovider", "--speedbench-engine=fake", f"--speedbench-model={model}",
            "--speedbench-max-tokens=32", "--speedbench-progress=off", "--speedbench-rounds=1"]
    return args + [f"--speedbench-drafter={d}" for d in drafters or ("none", "ngram:k=3")]


def _write_project(where: Path, n_items: int) -> None:
    (where / "test_cases.py").write_text(CASES.replace("N_ITEMS", str(n_items)))
    (where / "pytest.ini").write_text(INI)


def _save_baseline(where: Path, *args: str, n_items: int = 12, env: dict[str, str] | None = None) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    _write_project(where, n_items)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--speedbench-save-baseline", "base"],
        cwd=where, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    path = where / "results" / "baselines" / "base.json"  # a bare NAME lands under results/baselines/
    assert path.is_file(), done.stdout[-2000:]
    assert "baseline saved to results/baselines/base.json (4 cases)" in done.stdout
    return path


@pytest.fixture(scope="module")
def acceptance_baseline(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> dict[str, Any]:
    path = _save_baseline(tmp_path_factory.mktemp("acceptance"), *_common(tiny_model_dir))
    return json.loads(path.read_text())


def _case(document: dict[str, Any], case_id: str) -> dict[str, Any]:
    return next(b for b in document["benchmarks"] if b["name"] == case_id)["extra_info"]["speedbench"]


def _compare(pytester: pytest.Pytester, model: str, document: dict[str, Any], *args: str,
             drafters: tuple[str, ...] = (), n_items: int = 12) -> pytest.RunResult:
    _write_project(pytester.path, n_items)
    target = pytester.path / "results" / "baselines" / "main.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document))
    return pytester.runpytest_subprocess(*_common(model, *drafters), "--speedbench-compare", "main", *args)


def _inflate_acceptance(record: dict[str, Any]) -> None:
    """Make the baseline accept more: half of every request's zero-accept steps become full accepts."""
    k = record["case"]["k"]
    for row in record["requests"]:
        hist = row["step_histogram"]
        moved = hist[0] // 2
        hist[0] -= moved
        hist[-1] += moved
        row["step_tokens"] += moved * k
    acceptance = record["acceptance"]
    acceptance["step_tokens"] = sum(row["step_tokens"] for row in record["requests"])
    acceptance["acceptance_length"] = acceptance["step_tokens"] / acceptance["steps"]


def test_identical_run_passes(pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict) -> None:
    result = _compare(pytester, tiny_model_dir, acceptance_baseline)
    result.assert_outcomes(passed=4)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*speedbench compare*",
        "*baseline results/baselines/main.json*engine fake fake-1*",
        "4 cases: 0 regressed, 0 improved, 0 unchanged, 2 identical, 2 not comparable",
        "identical: test_case[[]fake-ngram_k3-alpha[]], test_case[[]fake-ngram_k3-beta[]]",
        # one round: speed is not judged, and a case without a drafter has nothing else to compare
        ("not comparable test_case[[]fake-none-alpha[]]: speed: only 1 round (baseline 1, current 1; need 6*; "
         "acceptance not applicable: no drafter*"),
    ])


def test_injected_al_drop_fails_exactly_that_case(
    pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict
) -> None:
    document = copy.deepcopy(acceptance_baseline)
    _inflate_acceptance(_case(document, DROPPED))
    result = _compare(pytester, tiny_model_dir, document)
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "speedbench compare: regressed against results/baselines/main.json",
        "  REGRESSED AL * -> *: change -*, 99% CI [[]-*, -*[]], threshold 0.0*, p_adj *, 12 paired requests",
        "4 cases: 1 regressed, 0 improved, 0 unchanged, 1 identical, 2 not comparable",
        "REGRESSED test_case[[]fake-ngram_k3-beta[]]",
        "FAILED test_cases.py::test_case[[]fake-ngram_k3-beta[]]*",
    ])
    assert "Traceback" not in result.stdout.str() and "def test_case" not in result.stdout.str()
    # AR comes from the engine's counters, which the edit left alone: only stream-side metrics moved.
    assert "REGRESSED AR" not in result.stdout.str()


def test_engine_side_acceptance_drop_fails_every_drafting_case(
    pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict
) -> None:
    result = _compare(pytester, tiny_model_dir, acceptance_baseline, "--speedbench-engine-args", "accept=0.4")
    result.assert_outcomes(passed=2, failed=2)  # the none cases have no acceptance to lose
    result.stdout.fnmatch_lines(["*REGRESSED AR 0.3* -> 0.2*", "*REGRESSED AL*"])


def test_thresholds_come_from_ini(pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict) -> None:
    document = copy.deepcopy(acceptance_baseline)
    _inflate_acceptance(_case(document, DROPPED))
    _write_project(pytester.path, 12)
    (pytester.path / "pytest.ini").write_text(
        INI + "speedbench_compare_al_threshold = 5,0\nspeedbench_compare_rate_threshold = 1,0\n"
    )
    target = pytester.path / "results" / "baselines" / "main.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(document))
    result = pytester.runpytest_subprocess(*_common(tiny_model_dir), "--speedbench-compare", "main")
    result.assert_outcomes(passed=4)  # the drop is real but below the configured threshold
    result.stdout.fnmatch_lines(["4 cases: 0 regressed, 0 improved, 1 unchanged, 1 identical, 2 not comparable"])


def test_case_absent_from_baseline_is_not_comparable(
    pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict
) -> None:
    document = copy.deepcopy(acceptance_baseline)
    document["benchmarks"] = [b for b in document["benchmarks"] if b["name"] != "test_case[fake-ngram_k3-alpha]"]
    result = _compare(pytester, tiny_model_dir, document)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["not comparable test_case[[]fake-ngram_k3-alpha[]]: not in the baseline*"])


def test_baseline_cases_not_run_are_listed(
    pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict
) -> None:
    result = _compare(pytester, tiny_model_dir, acceptance_baseline, "-k", "alpha")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 baseline case(s) not run: test_case[[]fake-ngram_k3-beta[]], test_case[[]fake-none-beta[]]"])


def test_schema_mismatch_is_a_clear_error(pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict) -> None:
    document = copy.deepcopy(acceptance_baseline)
    document["speedbench_baseline_schema"] = 99
    result = _compare(pytester, tiny_model_dir, document)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        ("ERROR: --speedbench-compare: baseline */results/baselines/main.json: schema version 99 (records 2), "
        "but speedbench * reads schema 1*save a new baseline*--speedbench-save-baseline*")
    ])
    assert "Traceback" not in result.stderr.str()


def test_missing_or_foreign_baseline_is_a_clear_error(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    _write_project(pytester.path, 4)
    missing = pytester.runpytest_subprocess(*_common(tiny_model_dir), "--speedbench-compare", "nightly")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines([
        ("ERROR: --speedbench-compare: no baseline 'nightly' (looked for */nightly or */results/baselines/nightly.json);"
        " save one first with --speedbench-save-baseline nightly")
    ])
    (pytester.path / "results.json").write_text(json.dumps({"benchmarks": []}))
    foreign = pytester.runpytest_subprocess(*_common(tiny_model_dir), "--speedbench-compare", "results.json")
    assert foreign.ret == pytest.ExitCode.USAGE_ERROR
    foreign.stderr.fnmatch_lines(["*results.json: not a speedbench baseline*--speedbench-save-baseline*"])
    (pytester.path / "broken.json").write_text("{")
    broken = pytester.runpytest_subprocess(*_common(tiny_model_dir), "--speedbench-compare", "broken.json")
    broken.stderr.fnmatch_lines(["*broken.json: not valid JSON*"])


def test_gate_works_under_xdist(pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict) -> None:
    pytest.importorskip("xdist")
    document = copy.deepcopy(acceptance_baseline)
    _inflate_acceptance(_case(document, DROPPED))
    result = _compare(pytester, tiny_model_dir, document, "-n", "2")
    result.assert_outcomes(passed=3, failed=1)
    # the verdicts reach the controller's summary from the workers' reports
    result.stdout.fnmatch_lines(["*REGRESSED AL*", "4 cases: 1 regressed*", "REGRESSED test_case[[]fake-ngram_k3-beta[]]"])


def test_changed_drafter_config_is_matched_by_method(
    pytester: pytest.Pytester, tiny_model_dir: str, acceptance_baseline: dict
) -> None:
    by_id = _compare(pytester, tiny_model_dir, acceptance_baseline, drafters=("ngram:k=3,min=2",))
    by_id.assert_outcomes(passed=2)
    by_id.stdout.fnmatch_lines([("not comparable test_case[[]fake-ngram_k3_min2-alpha[]]: not in the baseline*"
                                "--speedbench-compare-match drafter-method*")])
    by_method = _compare(
        pytester, tiny_model_dir, acceptance_baseline, "--speedbench-compare-match", "drafter-method",
        drafters=("ngram:k=3,min=2",),
    )
    by_method.assert_outcomes(passed=2)
    by_method.stdout.fnmatch_lines([
        "identical: test_case[[]fake-ngram_k3_min2-alpha[]] (vs test_case[[]fake-ngram_k3-alpha[]]), *",
        "note: speed: fingerprint differs: drafter 'ngram:k=3' -> 'ngram:k=3,min=2'*; only 1 round*",
    ])


# --- throughput and latency ---------------------------------------------------------------------

# A shared 2-core machine swings wall-clock throughput by tens of percent between rounds, which the
# gate rightly refuses to judge. These tests run FakeEngine on a virtual clock instead: time moves
# only when the engine sleeps (step_s per step, with seeded jitter per sleep), so a run's rounds
# vary by ~2% and a slower step_s is a real, exact slow-down, whatever else the machine does.
VIRTUAL_CLOCK = """
import asyncio
import os
import random
import types

import speedbench_plugin.engines.fake as fake


class VirtualClock:
    def __init__(self, jitter: float, seed: str) -> None:
        self.now = 1000.0
        self.jitter = jitter
        self.rng = random.Random(seed)

    def perf_counter(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds:
            self.now += seconds * (1.0 + self.rng.uniform(-self.jitter, self.jitter))
        await asyncio.sleep(0)


clock = VirtualClock(float(os.environ.get("SB_CLOCK_JITTER", "0.5")), os.environ.get("SB_CLOCK_SEED", "0"))
fake.time = types.SimpleNamespace(perf_counter=clock.perf_counter)
fake.asyncio = types.SimpleNamespace(sleep=clock.sleep)
"""
SPEED = ("--speedbench-rounds=8", "--speedbench-concurrency=4")
STEP_S = 0.01


@pytest.fixture(scope="module")
def speed_baseline(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> dict[str, Any]:
    where = tmp_path_factory.mktemp("speed")
    (where / "conftest.py").write_text(VIRTUAL_CLOCK)
    path = _save_baseline(
        where, *_common(tiny_model_dir), *SPEED, f"--speedbench-engine-args=step_s={STEP_S}",
        env={"SB_CLOCK_SEED": "baseline"},
    )
    document = json.loads(path.read_text())
    assert all(b["extra_info"]["speedbench"]["case"]["rounds"] == 8 for b in document["benchmarks"])
    return document


def _compare_speed(pytester: pytest.Pytester, model: str, document: dict, step_s: float,
                   monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    (pytester.path / "conftest.py").write_text(VIRTUAL_CLOCK)
    monkeypatch.setenv("SB_CLOCK_SEED", "current")  # other jitter than the baseline's: real noise
    return _compare(pytester, model, document, *SPEED, f"--speedbench-engine-args=step_s={step_s}")


def test_throughput_noise_within_threshold_passes(
    pytester: pytest.Pytester, tiny_model_dir: str, speed_baseline: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _compare_speed(pytester, tiny_model_dir, speed_baseline, STEP_S, monkeypatch)
    result.assert_outcomes(passed=4)
    assert "REGRESSED" not in result.stdout.str()
    # judged, not skipped: 8 rounds on both sides
    result.stdout.fnmatch_lines(["4 cases: 0 regressed, 0 improved, 4 unchanged, 0 identical, 0 not comparable"])


def test_throughput_drop_of_30_percent_fails(
    pytester: pytest.Pytester, tiny_model_dir: str, speed_baseline: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    slower = STEP_S / 0.7  # every step takes 1/0.7 as long: throughput falls by 30%
    result = _compare_speed(pytester, tiny_model_dir, speed_baseline, slower, monkeypatch)
    result.assert_outcomes(failed=4)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        ("*REGRESSED output TPS (median of 8 vs 8 rounds) * -> * tok/s: change -30.*%, 99% CI [[]-*%, -*%[]], "
        "threshold *% (baseline CV *%), p_adj *"),
    ])
    assert "Traceback" not in result.stdout.str()


# --- out of the box (issue 16) ------------------------------------------------------------------


def test_gate_chooses_a_judgeable_workload_and_says_so(pytester: pytest.Pytester, tiny_model_dir: str) -> None:
    _write_project(pytester.path, 6)
    args = [a for a in _common(tiny_model_dir, "ngram:k=3") if a != "--speedbench-rounds=1"]
    result = pytester.runpytest_subprocess(*args, "--speedbench-save-baseline", "auto", "--collect-only")
    result.stdout.fnmatch_lines(["speedbench gate (save a baseline): 6 rounds per case (speed is judged only with 6+ rounds*"])
    asked = pytester.runpytest_subprocess(*args, "--speedbench-rounds=2", "--speedbench-save-baseline", "auto",
                                          "--collect-only")
    asked.stdout.fnmatch_lines(["speedbench gate (save a baseline): 2 round(s) as asked: speed will not be judged (needs 6)*"])


def test_not_comparable_lists_every_reason(pytester: pytest.Pytester, tiny_model_dir: str,
                                           acceptance_baseline: dict) -> None:
    result = _compare(pytester, tiny_model_dir, acceptance_baseline, "--speedbench-compare-match", "drafter-method",
                      drafters=("ngram:k=3,min=2",), n_items=3)
    result.assert_outcomes(passed=2)
    line = next(l for l in result.stdout.lines if l.startswith("not comparable test_case[fake-ngram_k3_min2-alpha]"))
    assert "acceptance: only 3 paired requests (need 5" in line
    assert "speed: fingerprint differs: drafter 'ngram:k=3' -> 'ngram:k=3,min=2'" in line and "only 1 round" in line
    assert "drafter ngram:k=3 (baseline) -> ngram:k=3,min=2 (current)" in line


def test_a_gate_that_judged_nothing_warns_and_fails_when_strict(pytester: pytest.Pytester, tiny_model_dir: str,
                                                                acceptance_baseline: dict) -> None:
    lenient = _compare(pytester, tiny_model_dir, acceptance_baseline, n_items=3)
    lenient.assert_outcomes(passed=4)
    assert lenient.ret == 0
    lenient.stdout.fnmatch_lines(["*the comparison judged NOTHING*--speedbench-compare-strict*"])
    strict = _compare(pytester, tiny_model_dir, acceptance_baseline, "--speedbench-compare-strict", n_items=3)
    strict.assert_outcomes(passed=4)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
