"""The gate tells "same outputs, different speed" from "different outputs", and names each resolved
engine setting that differs between the runs."""
from __future__ import annotations

import dataclasses

from recordkit import make_record

from speedbench_plugin import metrics as m
from speedbench_plugin.compare import judge
from speedbench_plugin.compare.settings import Thresholds
from speedbench_plugin.record import Record, RequestRow

CONFIG = {"speculative.method": "ngram", "speculative.prompt_lookup_min": 1, "scheduler.async_scheduling": False}


def _record(outputs: dict[str, list[int]], config: dict[str, object] | None = CONFIG, tps: float = 100.0) -> Record:
    rows = tuple(RequestRow(q, 0, 0, None, 10, len(ids), output_sha256=m.output_sha256(ids)) for q, ids in outputs.items())
    record = make_record("ngram:k=3", category="coding", requests=rows, output_tps=tps)
    engine = {"engine": "vllm", **({"resolved_config": {"source": "t", "comparable": config}} if config is not None else {})}
    return dataclasses.replace(record, engine=engine, outputs_sha256=m.outputs_sha256(
        (r.question_id, r.turn, r.round, r.output_sha256) for r in rows))


def _compare(cur: Record, base: Record) -> judge.CaseComparison:
    return judge.compare_case(cur, base, baseline_path="b.json", thresholds=Thresholds(resamples=100), family_size=1,
                              current_hardware={"cpu_model": "x", "gpus": []}, baseline_hardware={"cpu_model": "x", "gpus": []})


OUTPUTS = {"q1": [1, 2, 3], "q2": [4, 5], "q3": [6]}


def test_same_outputs_with_other_speed_say_so() -> None:
    result = _compare(_record(OUTPUTS, tps=50.0), _record(OUTPUTS))
    assert result.outputs == judge.SAME_OUTPUTS
    assert any(n.startswith("same outputs: every request produced the same tokens") for n in result.notes)


def test_different_outputs_name_the_requests() -> None:
    result = _compare(_record({**OUTPUTS, "q2": [4, 6]}), _record(OUTPUTS))
    assert result.outputs == judge.DIFFERENT_OUTPUTS
    assert any(n.startswith("different outputs: 1 of 3 paired requests produced other tokens (q2 turn 1)")
               for n in result.notes)


def test_a_run_without_hashes_is_not_called_same() -> None:
    old = dataclasses.replace(_record(OUTPUTS), outputs_sha256=None)
    result = _compare(_record(OUTPUTS), old)
    assert result.outputs is None and "outputs not compared: the baseline's requests carry no output hashes" in result.notes


def test_a_resolved_config_difference_is_named_and_blocks_speed() -> None:
    other = {**CONFIG, "speculative.prompt_lookup_min": 3}
    result = _compare(_record(OUTPUTS, other), _record(OUTPUTS))
    assert "engine config speculative.prompt_lookup_min 1 -> 3" in result.notes
    speed = [r for r in result.metrics if r.kind == "speed"]
    assert speed and all(r.status == judge.NOT_COMPARABLE and "speculative.prompt_lookup_min 1 -> 3" in (r.note or "")
                         for r in speed)
    assert judge.config_differences(_record(OUTPUTS), _record(OUTPUTS)) == []
    assert judge.config_differences(_record(OUTPUTS, None), _record(OUTPUTS, other)) == []  # nothing to compare
