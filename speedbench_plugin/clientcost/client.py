"""The speedbench side of the comparison, run as its own process tree: the ``openai`` engine driven
by the suite's own round runner, on one event loop (``processes`` 0) or through the client worker
processes of ``--speedbench-clients N``; it writes what the record would hold of the round."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from speedbench_plugin import metrics as m
from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, Sampling, StreamResult
from speedbench_plugin.engines.openai import OpenAIEngine
from speedbench_plugin.load.clients import ClientPool, WorkerSpec, observed_round
from speedbench_plugin.record import MeasuredRound
from speedbench_plugin.runner import WorkItem


def load_items(path: Path) -> list[WorkItem]:
    rows = json.loads(path.read_text())
    return [WorkItem(f"p{i:04d}", row["category"], prompt_ids=tuple(row["ids"])) for i, row in enumerate(rows)]


def summarize(measured: MeasuredRound, counters: dict[str, Any] | None, k: int) -> dict[str, Any]:
    """The round's figures as the record computes them, and per-request counts for the cross-check."""
    streams: list[StreamResult] = [r.stream for r in measured.requests]
    requests = [{
        "id": r.question_id, "output_tokens": r.stream.output_tokens, "chunks": len(r.stream.chunks),
        "merged_chunks": m.merged_chunks(r.stream, k), "finish_reason": r.stream.finish_reason,
        "error": r.stream.error, "spec": r.stream.spec.to_dict() if r.stream.spec else None,
        "steps": None if r.stream.steps is None else {"accepted": list(r.stream.steps.accepted),
                                                      "drafted": list(r.stream.steps.drafted)},
        "ttft_s": m.ttft(r.stream), "first_chunk_t": r.stream.chunks[0].t if r.stream.chunks else None,
    } for r in measured.requests]
    return {"output_tps": m.output_tps(streams), "output_tokens": sum(s.output_tokens for s in streams),
            "errors": sum(1 for s in streams if s.error), "wall_s": measured.t_end - measured.t_start,
            "cpu_s": measured.cpu_s, "counters": counters, "requests": requests}


def run(endpoint: str, model: str, prompts: Path, concurrency: int, max_tokens: int, processes: int, drafter: str,
        ignore_eos: bool, result: Path) -> None:
    config = EngineConfig(model=model, drafter=DrafterSpec.parse(drafter), endpoint=endpoint)
    sampling = Sampling(max_tokens=max_tokens, temperature=0.0, ignore_eos=ignore_eos)
    items = load_items(prompts)
    engine = OpenAIEngine(config)  # for the counters (and, with one loop, the round itself)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(engine.start())
    try:
        if processes == 0:
            measured, _ = loop.run_until_complete(observed_round(engine, None, items, sampling, concurrency, 0))
        else:
            pool = ClientPool(WorkerSpec("openai", config), processes)
            pool.start()
            try:
                measured = pool.run_round(items, sampling, concurrency)
            finally:
                pool.close()
        counts = loop.run_until_complete(engine.counters())
    finally:
        loop.run_until_complete(engine.stop())
        loop.close()
    k = config.drafter.k if config.drafter.enabled else 0
    summary = summarize(measured, counts.to_dict() if counts else None, k)
    summary["describe"] = engine.describe()
    result.write_text(json.dumps(summary, indent=1, default=str))
