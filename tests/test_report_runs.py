"""Reports from real runs on FakeEngine (a synthetic engine: the records are built by the suite's own
code from real streams), and the HTML report opened in a real headless Chromium.

Runs, once per module: ``k3`` (none and ngram:k=3, saved as a baseline, with --speedbench-report),
``k5`` (none and ngram:k=5, merged stream chunks without a per-step record) and ``gate`` (ngram:k=3
with a lower acceptance, compared with k3's baseline: its drafting cases regress).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from recordkit import make_record, with_speedups

from speedbench_plugin.cache import atomic_write_json
from speedbench_plugin.report import load_report, render
from speedbench_plugin.report.build import build_sections
from speedbench_plugin.reports import results_document

ROOT = Path(__file__).resolve().parent.parent
CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

@pytest.mark.qualitative
@pytest.mark.parametrize("label", ["coding", "math", "writing"])
def test_case(sb_case, sb_concurrency, label):
    items = [WorkItem(f"{label}{i}", label, prompt_ids=tuple(range(3 * len(label), 3 * len(label) + 5 + i)))
             for i in range(6)]
    sb_case.run(items, split="qualitative", labels={"category": label}, concurrency=sb_concurrency)
"""


@dataclass(frozen=True)
class Runs:
    folder: Path
    k3: Path
    k5: Path
    gate: Path
    k3_stdout: str
    plugin_report: Path


def _report_plugin_args() -> list[str]:
    """``-p`` where the installed package predates the report's pytest11 entry point."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
    return [] if "speedbench_report" in names else ["-p", "speedbench_plugin.report.plugin"]


def _pytest(folder: Path, model: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "test_cases.py", "-p", "no:cacheprovider", "--rootdir", str(folder), "-c",
         os.devnull, "--speedbench-engine", "fake", f"--speedbench-model={model}", "--speedbench-max-tokens", "24",
         "--speedbench-rounds", "2", "--speedbench-progress", "off", "--benchmark-disable", *_report_plugin_args(), *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> Runs:
    folder = tmp_path_factory.mktemp("report-runs")
    (folder / "test_cases.py").write_text(CASES)
    k3 = _pytest(folder, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=3",
                 "--speedbench-json", "k3.json", "--speedbench-save-baseline", str(folder / "base.json"),
                 "--speedbench-run-dir", "run-k3", "--speedbench-report", "run")
    assert k3.returncode == 0, k3.stdout[-3000:] + k3.stderr[-3000:]
    k5 = _pytest(folder, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=5",
                 "--speedbench-engine-args", "merge_every=3", "--speedbench-engine-args", "per_step_record=false",
                 "--speedbench-json", "k5.json", "--speedbench-run-dir", "run-k5")
    assert k5.returncode == 0, k5.stdout[-3000:] + k5.stderr[-3000:]
    gate = _pytest(folder, tiny_model_dir, "--speedbench-drafter", "none", "--speedbench-drafter", "ngram:k=3",
                   "--speedbench-engine-args", "accept=0.25", "--speedbench-compare", str(folder / "base.json"),
                   "--speedbench-json", "gate.json", "--speedbench-run-dir", "run-gate")
    assert gate.returncode == 1, gate.stdout[-3000:] + gate.stderr[-3000:]  # the drafting cases regressed
    return Runs(folder, folder / "k3.json", folder / "k5.json", folder / "gate.json", k3.stdout,
                folder / "run-k3" / "report.html")


def _records(path: Path) -> dict[str, dict[str, Any]]:
    return {b["name"]: b["extra_info"]["speedbench"] for b in json.loads(path.read_text())["benchmarks"]}


def test_a_run_writes_its_report_and_ends_with_its_path(runs: Runs) -> None:
    assert runs.k3_stdout.rstrip().splitlines()[-1] == "speedbench report: run-k3/report.html"
    html = runs.plugin_report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Acceptance by category" in html
    report = load_report([runs.k3])
    ids = [s.id for s in build_sections(report)[1]]
    # "sections": what extensions add to each record (the telemetry's cost per token), shown as recorded
    assert ids == ["fingerprint", "acceptance", "positions", "fidelity", "speed", "sections", "warnings"]
    # The heatmap's table shows each record's own AL.
    table = next(b.table for s in build_sections(report)[1] for b in s.blocks if b.title.startswith("AL by category"))
    assert table is not None
    for category in ("coding", "math", "writing"):
        record = _records(runs.k3)[f"test_case[fake-ngram_k3-{category}]"]
        column = [c.name for c in table.columns].index(category)
        assert table.rows[0][column] == record["acceptance"]["acceptance_length"]


def test_two_runs_show_per_category_deltas(runs: Runs) -> None:
    report = load_report([runs.k3, runs.k5])
    comparison = report.comparisons[0]
    assert comparison.matched_by == {"case id": 3, "same labels and drafter method": 3}
    assert not comparison.only_reference and not comparison.only_other
    sections = build_sections(report)[1]
    delta = next(b.table for s in sections for b in s.blocks if b.title.startswith("Δ AL by category"))
    assert delta is not None and delta.rows[0][0] == "ngram_k3 → ngram_k5"
    k3, k5 = _records(runs.k3), _records(runs.k5)
    for category in ("coding", "math", "writing"):
        expected = (k5[f"test_case[fake-ngram_k5-{category}]"]["acceptance"]["acceptance_length"]
                    - k3[f"test_case[fake-ngram_k3-{category}]"]["acceptance"]["acceptance_length"])
        column = [c.name for c in delta.columns].index(category)
        assert delta.rows[0][column] == pytest.approx(expected)
    html = render(report)
    assert "Δ AL by category (qualitative): k5 − k3" in html
    assert "AL from different step sources (engine:fake:per_step vs stream)" in html  # k5's stream merged steps


def test_markdown_of_a_gate_run_names_each_regressed_case(runs: Runs) -> None:
    regressed = [case_id for case_id, r in _records(runs.gate).items()
                 if (r["sections"].get("comparison") or {}).get("status") == "regressed"]
    assert sorted(regressed) == [f"test_case[fake-ngram_k3-{c}]" for c in ("coding", "math", "writing")]
    done = subprocess.run([sys.executable, "-m", "speedbench_plugin", "report", str(runs.gate), "--format", "md", "-o", "-"],
                          capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    markdown = done.stdout
    assert "❌ **regressed**: 6 cases, 3 regressed" in markdown
    for case_id in regressed:
        assert f"**REGRESSED** `{case_id}`" in markdown
    baseline_al = _records(runs.k3)["test_case[fake-ngram_k3-coding]"]["acceptance"]["acceptance_length"]
    current_al = _records(runs.gate)["test_case[fake-ngram_k3-coding]"]["acceptance"]["acceptance_length"]
    assert f"AL {baseline_al:.3f} -> {current_al:.3f}" in markdown


# --- in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    from browser import find_or_install_chromium

    path, why = find_or_install_chromium()
    if path is None:
        pytest.skip(f"no headless Chromium: {why}")
    return path


def _throughput_and_load(path: Path) -> Path:
    """Throughput and load sections, for which a fake-engine qualitative run has no data."""
    records = with_speedups([make_record(d, concurrency=c, tier=t, output_tps=100.0 * c * (1.3 if d != "none" else 1.0),
                                         user_tps=100.0 / c, engine="fake")
                             for d in ("none", "ngram:k=3") for c in (1, 2, 4) for t in ("mixed", "random")])
    records[0] = records[0].with_sections({"load": {"rows": [{"rate": 1.0, "p50_s": 0.2}, {"rate": 2.0, "p50_s": 0.3}]}})
    atomic_write_json(path, results_document(records))
    return path


EXPECTED_SECTIONS = ["fingerprint", "gate", "runs", "acceptance", "positions", "fidelity", "speed", "throughput", "load",
                     "sections", "warnings"]


def test_the_report_in_a_real_browser(runs: Runs, chromium: str, tmp_path: Path) -> None:
    from browser import colours, open_page
    from PIL import Image

    paths = [runs.k3, runs.k5, runs.gate, _throughput_and_load(tmp_path / "sweep.json")]
    report = load_report(paths)
    sections = build_sections(report)[1]
    page = tmp_path / "report.html"
    page.write_text(render(report))
    result = open_page(chromium, page, tmp_path / "profile")
    assert result.console_errors == []
    assert result.network == []  # nothing fetched: the file is self-contained
    facts = result.facts
    assert facts["sections"] == EXPECTED_SECTIONS
    assert facts["h2"] == [s.title for s in sections]
    assert facts["h3"] == [b.title for s in sections for b in s.blocks]
    figures = [b.title for s in sections for b in s.blocks if b.figure is not None]
    assert [f["title"] for f in facts["figures"]] == figures and len(figures) >= 15
    for figure in facts["figures"]:
        assert figure["svgs"] == 1 and figure["width"] > 200 and figure["height"] > 100, figure
        assert figure["table"], f"{figure['title']}: no table beside the figure"
    assert facts["overflowing"] == 0  # no figure wider than the window
    (tmp_path / "screenshot.png").write_bytes(result.screenshot)
    (tmp_path / "full.png").write_bytes(result.full_page)
    for name in ("screenshot.png", "full.png"):
        assert colours((tmp_path / name).read_bytes()) > 50, f"{name} is blank"
        with Image.open(tmp_path / name) as image:
            assert image.width == 1400 and image.height >= 1000
    keep = os.environ.get("SPEEDBENCH_REPORT_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name in ("report.html", "screenshot.png", "full.png"):
            (Path(keep) / name).write_bytes((tmp_path / name).read_bytes())


def test_the_browser_check_sees_errors_fetches_and_blank_pages(chromium: str, tmp_path: Path) -> None:
    """The checks above can fail: a script error, a fetch and a blank page are each caught."""
    from browser import colours, open_page

    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><h2>x</h2><img src="http://example.invalid/a.png">'
                      "<script>console.error('boom'); missing();</script></body></html>")
    result = open_page(chromium, broken, tmp_path / "profile-1")
    assert any("boom" in e for e in result.console_errors) and any(e.startswith("exception") for e in result.console_errors)
    assert result.network == ["http://example.invalid/a.png"]
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert colours(open_page(chromium, blank, tmp_path / "profile-2").screenshot) == 1
