"""Cross-engine check: the first turn of one question per category, greedy, through the session
engine and a second one (``--speedbench-cross-engine hf``), reporting where outputs and AL diverge.

Engines may legitimately differ after a near-tie in bf16 logits; the check reports the first
diverging position per prompt rather than failing on it. It fails when either engine errors.
Both engines get the same token ids (the prompt's sha256 is in every row to prove it).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.case import EngineUnderTest
from speedbench_plugin.engines.base import Sampling
from speedbench_plugin.record import MeasuredRound
from speedbench_plugin.runner import WorkItem, run_round


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def _al(run: MeasuredRound, k: int) -> float:
    return m.acceptance_length_of(m.StreamSteps.pool(run.streams, k))


def compare_runs(ours: MeasuredRound, theirs: MeasuredRound, k: int) -> dict[str, Any]:
    rows = []
    pairs = list(zip(ours.requests, theirs.requests))
    for a, b in pairs:
        rows.append({
            "question_id": a.question_id, "prompt_sha256": [a.prompt_sha256, b.prompt_sha256],
            "first_divergence": first_divergence(a.stream.output_ids, b.stream.output_ids),
            "output_sha256": [m.output_sha256(a.stream.output_ids), m.output_sha256(b.stream.output_ids)],
            "tokens": [a.stream.output_tokens, b.stream.output_tokens],
            "acceptance_length": [m.acceptance_length_of(m.StreamSteps.pool([a.stream], k)),
                                  m.acceptance_length_of(m.StreamSteps.pool([b.stream], k))],
        })
    hashes = [m.outputs_sha256((req.question_id, req.turn, 0, m.output_sha256(req.stream.output_ids)) for req in side)
              for side in zip(*pairs)] if pairs else [m.outputs_sha256(()), m.outputs_sha256(())]
    return {"identical_outputs": sum(r["first_divergence"] is None for r in rows), "prompts": len(rows), "rows": rows,
            "outputs_sha256": hashes, "same_outputs": hashes[0] == hashes[1],
            "acceptance_length": [_al(ours, k), _al(theirs, k)]}


class CrossEngineCheck:
    def __init__(self, target: EngineUnderTest, benchmark: Any) -> None:
        self.target, self.benchmark = target, benchmark

    def run(self, questions: Mapping[str, Sequence[WorkItem]]) -> dict[str, Any]:
        from speedbench_plugin.engine_start import start_engine

        settings = self.target.settings
        other_name = settings.cross_engine
        if not other_name:
            pytest.skip("set --speedbench-cross-engine NAME to compare engines")
        tokenizer = self.target.tokenizer
        items = [WorkItem(q[0].question_id, category,
                          prompt_ids=tuple(tokenizer.encode_chat([{"role": "user", "content": q[0].turns[0]}])))
                 for category, q in questions.items() if q]
        sampling = Sampling(max_tokens=settings.max_tokens, temperature=0.0)
        host = self.target.host
        ours = host.run(run_round(host.engine, None, items, sampling, concurrency=1))
        import dataclasses

        other = start_engine(dataclasses.replace(settings, engine=other_name), self.target.model, self.target.drafter, {})
        theirs: list[MeasuredRound] = []
        try:
            self.benchmark.pedantic(lambda: theirs.append(other.run(run_round(other.engine, None, items, sampling, 1))),
                                    rounds=1, iterations=1)
        finally:
            other.close()
        errors = [r.stream.error for run in (ours, theirs[0]) for r in run.requests if r.stream.error]
        if errors:
            pytest.fail(f"cross-engine: {len(errors)} request(s) failed: {errors[:3]}", pytrace=False)
        k = self.target.drafter.k if self.target.drafter.enabled else 0
        result = {"engines": [host.engine.name, other_name], "drafter": str(self.target.drafter),
                  **compare_runs(ours, theirs[0], k)}
        self.benchmark.extra_info["cross_engine"] = result
        print(f"\ncross-engine {host.engine.name} vs {other_name} ({self.target.drafter}): "
              f"{result['identical_outputs']}/{result['prompts']} identical greedy outputs; AL {result['acceptance_length']}; "
              + ("same outputs (sha256 " + result["outputs_sha256"][0][:12] + "): AL and speed differ on the same work"
                 if result["same_outputs"] else "different outputs: AL and speed differences include different work"))
        for row in result["rows"]:
            if row["first_divergence"] is not None:
                print(f"  {row['question_id']}: diverges at token {row['first_divergence']}")
        return result
