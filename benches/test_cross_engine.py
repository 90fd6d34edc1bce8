"""Cross-engine check: the first turn of one question per category, greedy, through the session
engine and a second one (``--speedbench-cross-engine hf``), reporting where outputs and AL diverge.

Engines may legitimately differ after a near-tie in bf16 logits; the check reports the first
diverging position per prompt rather than failing on it. It fails when either engine errors.
"""
from __future__ import annotations

import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.engines.base import Sampling
from speedbench_plugin.runner import EngineHost, WorkItem, run_round

pytestmark = pytest.mark.qualitative


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def test_cross_engine(sb_engine, sb_settings, sb_questions, sb_tokenizer, benchmark):
    other_name = sb_settings.cross_engine
    if not other_name:
        pytest.skip("set --speedbench-cross-engine NAME to compare engines")
    from speedbench_plugin.engines import EngineConfig, EngineError, UnknownEngine, create_engine
    from speedbench_plugin.plugin import resolve_drafter

    items = []
    for category, questions in sb_questions.items():
        first = questions[0]
        ids = sb_tokenizer.encode_chat([{"role": "user", "content": first.turns[0]}])
        items.append(WorkItem(first.question_id, category, prompt_ids=tuple(ids)))
    sampling = Sampling(max_tokens=sb_settings.max_tokens, temperature=0.0)
    ours = sb_engine.host.run(run_round(sb_engine.host.engine, None, items, sampling, concurrency=1))
    try:
        other = create_engine(other_name, EngineConfig(sb_engine.model, resolve_drafter(sb_engine.drafter), {}))
    except (UnknownEngine, EngineError) as exc:
        pytest.fail(f"--speedbench-cross-engine {other_name!r}: {exc}", pytrace=False)
    host = EngineHost(other)
    theirs = []
    try:
        try:
            host.start()
        except Exception as exc:  # noqa: BLE001 - name the engine, not a traceback
            pytest.fail(f"--speedbench-cross-engine {other_name!r} failed to start: {exc}", pytrace=False)
        benchmark.pedantic(lambda: theirs.append(host.run(run_round(other, None, items, sampling, 1))), rounds=1, iterations=1)
    finally:
        host.close()
    assert not ours.errors and not theirs[0].errors, ours.errors + theirs[0].errors
    k = sb_engine.drafter.k if sb_engine.drafter.enabled else 0
    rows = []
    for a, b in zip(ours.turns, theirs[0].turns):
        al_a = m.acceptance_length(m.StreamSteps.pool([a.stream], k))
        al_b = m.acceptance_length(m.StreamSteps.pool([b.stream], k))
        rows.append({
            "question_id": a.question_id, "category": a.category,
            "first_divergence": first_divergence(a.stream.output_ids, b.stream.output_ids),
            "tokens": [a.stream.output_tokens, b.stream.output_tokens],
            "acceptance_length": [al_a, al_b],
        })
    identical = sum(r["first_divergence"] is None for r in rows)
    benchmark.extra_info["cross_engine"] = {
        "engines": [sb_engine.host.engine.name, other_name], "drafter": str(sb_engine.drafter),
        "identical_outputs": identical, "prompts": len(rows), "rows": rows,
        "acceptance_length": [
            m.acceptance_length(m.StreamSteps.pool(ours.streams, k)),
            m.acceptance_length(m.StreamSteps.pool(theirs[0].streams, k)),
        ],
    }
    print(f"\ncross-engine {sb_engine.host.engine.name} vs {other_name} ({sb_engine.drafter}): "
          f"{identical}/{len(rows)} identical greedy outputs; AL {benchmark.extra_info['cross_engine']['acceptance_length']}")
    for row in rows:
        if row["first_divergence"] is not None:
            print(f"  {row['category']:<14} {row['question_id']}: diverges at token {row['first_divergence']}")
