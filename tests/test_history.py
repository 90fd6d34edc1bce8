"""The history across real runs on FakeEngine (a synthetic engine: records are built by the suite's
own code from real streams), its change-point marks, its page in a real headless Chromium, and
the per-token cost every record carries.

Three runs, once per module, each ``none`` and ``ngram:k=3`` on two categories: ``good`` (the
fake drafter accepts each draft with probability 0.7), ``weak`` (0.2: a weaker drafter) and
``again`` (0.7). The history must mark AL's drop at ``weak`` (reverted at ``again``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin.history.load import history_runs
from speedbench_plugin.history.page import render_history
from speedbench_plugin.history.series import build_series
from speedbench_plugin.report.model import ReportInputError

ROOT = Path(__file__).resolve().parent.parent
CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

@pytest.mark.qualitative
@pytest.mark.parametrize("label", ["coding", "math"])
def test_case(sb_case, sb_concurrency, label):
    items = [WorkItem(f"{label}{i}", label, prompt_ids=tuple(range(3 * len(label), 3 * len(label) + 5 + i)))
             for i in range(8)]
    sb_case.run(items, split="qualitative", labels={"category": label}, concurrency=sb_concurrency)
"""


@dataclass(frozen=True)
class Runs:
    folder: Path
    good: Path  # a run folder (results file inside)
    weak: Path  # a results file
    again: Path  # a run folder holding only its journal


MLFLOW = importlib.util.find_spec("mlflow")


def _pytest(folder: Path, model: str, *args: str) -> subprocess.CompletedProcess[str]:
    # MLflow 3 keeps its file store only on request (it prefers a database, which mlflow-skinny lacks).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MLFLOW_ALLOW_FILE_STORE": "true"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "test_cases.py", "-p", "no:cacheprovider", "--rootdir", str(folder), "-c",
         os.devnull, "--speedbench-engine", "fake", f"--speedbench-model={model}", "--speedbench-max-tokens", "32",
         "--speedbench-rounds", "2", "--speedbench-progress", "off", "--benchmark-disable",
         "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=3", "--speedbench-telemetry-interval", "0.05",
         *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> Runs:
    folder = tmp_path_factory.mktemp("history-runs")
    (folder / "test_cases.py").write_text(CASES)
    for name, accept in (("good", 0.7), ("weak", 0.2), ("again", 0.7)):
        json_args = [] if name == "again" else ["--speedbench-json", f"run-{name}/{name}.json" if name == "good" else f"{name}.json"]
        if name == "weak" and MLFLOW is not None:  # the export, to a real local MLflow file store
            json_args += ["--speedbench-mlflow", (folder / "mlruns").as_uri(), "--speedbench-mlflow-experiment", "history"]
        done = _pytest(folder, tiny_model_dir, "--speedbench-engine-args", f"accept={accept}",
                       "--speedbench-engine-args", "step_s=0.002", "--speedbench-run-dir", f"run-{name}", *json_args)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (folder / "run-again" / "results.json").unlink()  # as a run killed before its end: only the journal is left
    return Runs(folder, folder / "run-good", folder / "weak.json", folder / "run-again")


def _records(path: Path) -> list[dict[str, Any]]:
    return [b["extra_info"]["speedbench"] for b in json.loads(path.read_text())["benchmarks"]]


def test_every_record_carries_its_cost_per_token_with_its_source(runs: Runs) -> None:
    records = _records(runs.weak)
    assert len(records) == 4
    for record in records:
        cost = record["sections"]["cost"]
        assert cost["cpu_s"] > 0 and cost["output_tokens"] == record["acceptance"]["output_tokens"]
        assert cost["cpu_s_per_output_token"] == pytest.approx(cost["cpu_s"] / cost["output_tokens"])
        assert cost["sources"]["cpu_s"].startswith("psutil: CPU seconds of process")
        assert set(cost["missing"]) >= ({"rapl"} if not Path("/sys/class/powercap").is_dir() else set())
        assert cost["sampler"]["samples"] >= 1 and cost["sampler"]["cpu_s"] > 0
        if record["case"]["k"]:
            accepted = record["acceptance"]["step_tokens"] - record["acceptance"]["steps"]
            assert cost["accepted_tokens"] == accepted > 0
            assert cost["cpu_s_per_accepted_token"] == pytest.approx(cost["cpu_s"] / accepted)
            ratio = record["sections"]["cost_vs_none"]
            none = next(r for r in records if r["case"]["case_id"] == ratio["baseline_case_id"])
            assert none["case"]["drafter"] == "none" and none["case"]["category"] == record["case"]["category"]
            assert ratio["cpu_s_per_output_token"] == pytest.approx(
                none["sections"]["cost"]["cpu_s_per_output_token"] / cost["cpu_s_per_output_token"])
        else:
            assert cost["cpu_s_per_accepted_token"] is None and "cost_vs_none" not in record["sections"]


def test_runs_are_read_from_folders_files_and_journals_in_any_order_once_each(runs: Runs) -> None:
    ordered = history_runs([runs.again, runs.weak, runs.good, runs.good / "good.json"])
    assert [r.label for r in ordered] == ["run-good/good", "weak", "run-again"]
    assert ordered[2].kind == "run folder journal"
    # The journal lacks session-level sections: the session's own functions add them.
    assert all(r.section("cost_vs_none") for r in ordered[2].records if r.case.k)
    with pytest.raises(ReportInputError, match="no such file"):
        history_runs([runs.folder / "missing.json"])


def test_the_weaker_drafter_is_marked_where_al_drops_and_reverts(runs: Runs) -> None:
    series = build_series(history_runs([runs.good, runs.weak, runs.again]))
    assert len(series) == 4  # two categories x (none, ngram), same model and hardware
    for s in series:
        assert [p.run.label for p in s.points] == ["run-good/good", "weak", "run-again"]
        if s.key[5] == "none":
            assert all(not p.marks for p in s.points)
            continue
        good, weak, again = s.points
        assert weak.record.acceptance.acceptance_length < good.record.acceptance.acceptance_length
        assert weak.marks["al"] == "drop (regressed), reverted at run-again"
        assert again.marks["al"] == "rise (improved), latest run: not yet confirmed"
        low, high = weak.band(next(f for f in _figures() if f.key == "al"), good.record.acceptance.acceptance_length) or (0, 0)
        assert low <= weak.record.acceptance.acceptance_length <= high
        assert not good.marks and good.comparison is None


def _figures() -> Any:
    from speedbench_plugin.history.series import FIGURES

    return FIGURES


def test_another_model_or_gpu_is_a_series_of_its_own(runs: Runs, tmp_path: Path) -> None:
    document = json.loads((runs.weak).read_text())
    for bench in document["benchmarks"]:
        bench["extra_info"]["speedbench"]["case"]["model_sha"] = "f" * 64
    document["datetime"] = "2099-01-01T00:00:00+00:00"
    other = tmp_path / "other-model.json"
    other.write_text(json.dumps(document))
    series = build_series(history_runs([runs.good, runs.weak, other]))
    assert len(series) == 8
    assert {len(s.points) for s in series} == {1, 2}
    assert all(len({p.record.case.model_sha for p in s.points}) == 1 for s in series)


def test_the_history_command_writes_a_page_and_a_summary(runs: Runs, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    page = tmp_path / "history.html"
    done = subprocess.run([sys.executable, "-m", "speedbench_plugin", "history", str(runs.again), str(runs.weak),
                           str(runs.good), "-o", str(page)], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"speedbench history: {page}"
    summary = subprocess.run([sys.executable, "-m", "speedbench_plugin", "history", str(runs.again), str(runs.weak),
                              str(runs.good), "--format", "md", "--html-name", "history.html", "-o", "-"],
                             capture_output=True, text=True, env=env, check=False)
    assert summary.returncode == 0, summary.stderr
    assert "drop (regressed), reverted at run-again" in summary.stdout and "`history.html`" in summary.stdout
    bad = subprocess.run([sys.executable, "-m", "speedbench_plugin", "history", str(tmp_path / "nothing.json")],
                         capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 2 and "nothing.json: no such file" in bad.stderr


@pytest.fixture(scope="module")
def chromium() -> str:
    from browser import find_or_install_chromium

    path, why = find_or_install_chromium()
    if path is None:
        pytest.skip(f"no headless Chromium: {why}")
    return path


def test_the_history_page_in_a_real_browser(runs: Runs, chromium: str, tmp_path: Path) -> None:
    from browser import colours, open_page

    page = tmp_path / "history.html"
    page.write_text(render_history(history_runs([runs.good, runs.weak, runs.again])))
    result = open_page(chromium, page, tmp_path / "profile")
    assert result.console_errors == [] and result.network == []
    facts = result.facts
    assert facts["sections"] == ["runs", "shifts", "case-0", "case-1"]
    figures = facts["figures"]
    assert len(figures) == 4 and all(f["svgs"] == 1 and f["width"] > 200 and f["table"] for f in figures)
    assert facts["overflowing"] == 0
    assert colours(result.full_page) > 50
    html = page.read_text()
    # The shift is in the table and drawn: a dashed vermillion line labelled where AL dropped.
    assert html.count("drop (regressed), reverted at run-again") >= 2  # AL of each ngram series, in the shifts table
    assert "stroke: #d55e00" in html.lower() and ">drop (regressed)<" in html


def test_a_run_exported_to_a_real_local_mlflow_store(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> None:
    if MLFLOW is None:
        pytest.skip("mlflow is not installed: pip install -e '.[mlflow]' (make test installs it with the dev extra)")
    from mlflow.tracking import MlflowClient

    from speedbench_plugin.mlflow_export import case_metrics
    from speedbench_plugin.record import Record

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(runs.folder / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("history")
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    records = [Record.from_json(r) for r in _records(runs.weak)]
    expected = {k: v for r in records for k, v in case_metrics(r).items()}
    assert run.data.metrics == pytest.approx(expected)
    assert "test_case_fake-ngram_k3-coding_/cpu_s_per_output_token_vs_none" in run.data.metrics
    assert run.data.params["drafters"] == "ngram:k=3, none" and run.data.params["cases"] == "4"
    [artifact] = client.list_artifacts(run.info.run_id)
    assert artifact.path == "speedbench-results.json"
