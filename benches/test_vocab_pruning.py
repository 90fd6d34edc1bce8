"""Vocabulary pruning (SPEED-Bench): the target drafts for itself with only the N most frequent
tokens of a reference corpus; AL per category per N. `make vocab-pruning` runs it on `hf` with
N in 4k..32k and the full vocabulary; the table, CSV and heatmap come from
speedbench_plugin.analyses.vocab_plugin (the `speedbench_vocab` entry point)."""
from __future__ import annotations

from speedbench_plugin.analyses.vocab_pruning import run_case


def test_vocab_pruning(sb_case, sb_engine, sb_category, sb_concurrency, sb_questions):
    run_case(sb_case, sb_engine, sb_category, sb_concurrency, sb_questions)
