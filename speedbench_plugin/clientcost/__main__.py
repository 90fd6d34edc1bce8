"""``python -m speedbench_plugin.clientcost``: the client-cost benchmark (``make client-cost``).

Starts one vLLM server (the tiny random model, no drafter), runs the ``openai`` engine and vLLM's
own ``vllm bench serve`` on the same token ids at each concurrency, each client ``--repeats``
times in interleaved order (the machine may be shared: CPU time is less noisy than wall time, but
the clients still take turns), the ``openai`` engine also through N client processes at the highest
concurrency, and the in-process ``vllm`` engine through the throughput bench; then a greedy n-gram
cross-check of the counts against vLLM's client on a second server. Prints one table and writes
``summary.json`` and ``summary.md`` into ``--out``.

``python -m speedbench_plugin.clientcost client ...`` is the speedbench client process itself.
"""
from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speedbench_plugin.cache import atomic_write_json
from speedbench_plugin.clientcost import client, clients, report, runs


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _or_error(part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return part()
    except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
        return {"error": f"{type(exc).__name__}: {exc}"}


def _write(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_json(out / "summary.json", summary)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["vllm-bench-serve"]:
        clients.vllm_bench_serve(argv[1:])
        return 0
    if argv[:1] == ["client"]:
        parser = argparse.ArgumentParser(prog="python -m speedbench_plugin.clientcost client")
        for name in ("--endpoint", "--model", "--prompts", "--result", "--drafter"):
            parser.add_argument(name, required=True)
        for name in ("--concurrency", "--max-tokens", "--processes"):
            parser.add_argument(name, type=int, required=True)
        parser.add_argument("--ignore-eos", action="store_true")
        a = parser.parse_args(argv[1:])
        client.run(a.endpoint, a.model, Path(a.prompts), a.concurrency, a.max_tokens, a.processes, a.drafter,
                   a.ignore_eos, Path(a.result))
        return 0
    parser = argparse.ArgumentParser(prog="python -m speedbench_plugin.clientcost", description=__doc__.split("\n\n")[1])
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    parser.add_argument("--out", default=f"results/client-cost/{stamp}", help="folder for logs and summary.{json,md}")
    parser.add_argument("--concurrency", type=_ints, default=[64, 256])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each client, interleaved")
    parser.add_argument("--processes", type=_ints, default=[1, 2, 4],
                        help="client worker processes for the openai engine at the highest concurrency")
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--crosscheck-prompts", type=int, default=12, help="0 skips the greedy n-gram cross-check")
    parser.add_argument("--in-process", choices=("on", "off"), default="on",
                        help="the in-process vllm engine at the highest concurrency (throughput bench)")
    a = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the servers and clients started here are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = runs.Settings(concurrencies=tuple(a.concurrency), repeats=a.repeats, processes=tuple(a.processes),
                             num_prompts=a.num_prompts, max_tokens=a.max_tokens)
    summary: dict[str, Any] = {"settings": settings.to_dict(), "stamp": stamp}
    summary["cost"] = runs.cost_runs(settings, out)
    _write(out, summary)  # the cost table is kept whatever happens next
    if a.in_process == "on":
        summary["in_process"] = _or_error(lambda: runs.in_process_run(settings, out))
    if a.crosscheck_prompts:
        summary["crosscheck"] = _or_error(lambda: runs.crosscheck(settings, a.crosscheck_prompts, out))
    _write(out, summary)
    text = report.markdown(summary)
    (out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
