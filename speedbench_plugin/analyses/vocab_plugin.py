"""pytest plugin for the vocabulary-pruning analysis (load with ``-p speedbench_plugin.analyses.vocab_plugin``;
as an entry point: ``speedbench_vocab = "speedbench_plugin.analyses.vocab_plugin"`` in ``pytest11``).

- ``pytest_speedbench_update_record``: a case whose drafter has ``vocab=N`` gets a
  ``draft_vocabulary`` section: the kept set's identity (corpus name, sha256, token count, kept-set
  sha256) and the share of the target's output tokens outside the kept set.
- ``pytest_speedbench_records``: at session end, the table, CSV and heatmap under ``results/``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from speedbench_plugin.record import MeasuredRound, Record

PATHS_KEY = pytest.StashKey[dict[str, Path]]()


def draft_vocabulary_section(drafter: str, model: str, outputs: Sequence[Sequence[int]]) -> dict[str, Any] | None:
    """The record section for one case, or None when its drafter keeps the full vocabulary."""
    from speedbench_plugin.drafters import DrafterSpec
    from speedbench_plugin.vocab import draft_vocabulary, model_vocab_size, out_of_vocab_share

    spec = DrafterSpec.parse(drafter)
    n = spec.option("vocab")
    if n is None:
        return None
    # The same kept set the engine applied: the target's tokenizer, the drafter's logit width.
    vocabulary = draft_vocabulary(model, n, model_vocab_size(spec.model or model))
    return {"draft_vocabulary": {**vocabulary.describe(),
                                 "out_of_vocabulary": out_of_vocab_share(outputs, vocabulary.mask)}}


def pytest_speedbench_update_record(config: pytest.Config, record: Record, rounds: Sequence[MeasuredRound]) -> dict[str, Any] | None:
    outputs = [stream.output_ids for round_ in rounds for stream in round_.streams]
    return draft_vocabulary_section(str(record.case.drafter), record.case.model, outputs)


def pytest_speedbench_records(config: pytest.Config, records: Sequence[Record]) -> None:
    from speedbench_plugin.analyses.vocab_pruning import pruning_frame, write_outputs
    from speedbench_plugin.rundir import run_directory

    if pruning_frame(records).empty:
        return
    out = run_directory(config)
    config.stash[PATHS_KEY] = write_outputs(records, out, "vocab_pruning")


def pytest_speedbench_terminal_summary(config: pytest.Config, records: Sequence[Record], terminalreporter: Any) -> None:
    from speedbench_plugin.analyses.vocab_pruning import losses, markdown_table, pruning_frame

    frame = pruning_frame(records)
    if frame.empty:
        return
    terminalreporter.section("vocabulary pruning (target as its own drafter)")
    terminalreporter.write(markdown_table(frame))
    worst = losses(frame)
    terminalreporter.write_line("largest AL drop at the smallest vocabulary: " + ", ".join(
        f"{category} {row.al_drop:.2f}" for category, row in worst.head(3).iterrows()))
    for kind, path in config.stash.get(PATHS_KEY, {}).items():
        terminalreporter.write_line(f"{kind}: {path}")
