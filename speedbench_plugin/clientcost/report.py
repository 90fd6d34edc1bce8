"""The client-cost summary as Markdown: one table of the clients, the in-process engine, the
cross-check."""
from __future__ import annotations

import statistics
from typing import Any

from speedbench_plugin.clientcost.runs import VLLM_BENCH


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _tokens(row: dict[str, Any]) -> str:
    return f"{row['server_prompt_tokens']:.0f} / {row['server_output_tokens']:.0f}"


def cost_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per client and concurrency: each run's figures in run order, and the ratio of the
    medians against vLLM's client at that concurrency."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["concurrency"], row["client"]), []).append(row)
    lines = [("| client | concurrency | output tok/s reported | client CPU µs per output token (steady state) | "
             "÷ vLLM's client | server prompt / output tokens | errors |"), "|---|---|---|---|---|---|---|"]
    for (concurrency, name), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != VLLM_BENCH, kv[0][1])):
        cost = statistics.median(r["cpu_us_per_token"] for r in runs)
        theirs = groups.get((concurrency, VLLM_BENCH))
        ratio = cost / statistics.median(r["cpu_us_per_token"] for r in theirs) if theirs else None
        lines.append(
            f"| {name} | {concurrency} | {' · '.join(_fmt(r['reported_output_tps']) for r in runs)} | "
            f"{' · '.join(_fmt(r['cpu_us_per_token'], 1) for r in runs)} | "
            f"{'–' if name == VLLM_BENCH or ratio is None else _fmt(ratio, 2)} | "
            f"{' · '.join(_tokens(r) for r in runs)} | "
            f"{sum(r['errors'] for r in runs)} |")
    return lines


def markdown(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    lines = [f"## Client cost ({summary['stamp']})", "",
             (f"{settings['num_prompts']} requests of ~128 prompt tokens and {settings['max_tokens']} output tokens "
             "(ignore_eos), the same token ids from every client, one vLLM server (tiny random model, no drafter); "
             f"each client run {settings['repeats']} times, interleaved. CPU over the client's whole process tree "
             "from 2 % of the run's tokens to the last (the server's generation counter)."), ""]
    lines += cost_table(summary["cost"])
    inproc = summary.get("in_process")
    if inproc:
        lines += [""]
        if "error" in inproc:
            lines.append(f"In-process `vllm` engine: {inproc['error']}")
        else:
            lines.append(f"In-process `vllm` engine (throughput bench, concurrency {inproc['concurrency']}, stream mode "
                         f"{inproc.get('stream_mode') or 'engine default'}): {_fmt(inproc['client_cpu_us_per_output'], 1)} "
                         f"µs of client CPU per output (vLLM's own non-streaming front end: "
                         f"{_fmt(inproc['ceiling_cpu_us_per_output'], 1)}), harness efficiency "
                         f"{_fmt(inproc['harness_efficiency'], 2)}, {_fmt(inproc['output_tps'])} tok/s.")
    check = summary.get("crosscheck")
    if check and "error" in check:
        lines += ["", f"Greedy cross-check: {check['error']}"]
    elif check:
        lines += ["", (f"Greedy cross-check, n-gram k=3, {check['requests']} prompts, one at a time: "
                  f"{'identical' if check['identical'] else 'DIFFERENT'}"), "",
                  "| count | speedbench (per-request metrics) | speedbench (server counters) | vllm bench serve |",
                  "|---|---|---|---|"]
        for name, row in check["counts"].items():
            lines.append(f"| {name} | {row['speedbench_per_request']} | {row['speedbench_server_counters']} | "
                         f"{row['vllm_bench_serve']} |")
        per_cat = check["output_tokens_per_category"]
        lines.append(f"| output tokens per category | {per_cat['speedbench']} | | {per_cat['vllm_bench_serve']} |")
    return "\n".join(lines) + "\n"
