"""Build the offline qualitative split: candidate pools -> embeddings -> Algorithm 1 per category -> cache.

The selection is deterministic for pinned corpora and embedders, so it is recorded in the package
(:mod:`speedbench_plugin.data.recorded`: ids and prompt sha256s) and a build normally rebuilds that
selection from the corpora without embedding; ``reselect`` (or changed corpora or embedders) runs
the full selection below.

Every category is embedded with MiniLM except multilingual, which uses multilingual-e5-small
(:class:`~speedbench_plugin.data.embed.MultilingualEmbedder`): MiniLM is an English model and
scatters non-Latin scripts arbitrarily, so its "diversity" over several languages mostly measures
tokenisation noise. Where the multilingual embedder cannot be had, MiniLM is used and the manifest
says why. The manifest reports per-language and per-script counts for the multilingual category,
and its selected-vs-random cosine under both embedders.
"""
from __future__ import annotations

import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from speedbench_plugin.cache import atomic_write_json, sha256_text
from speedbench_plugin.data import recorded
from speedbench_plugin.data.embed import (
    EMBEDDER_NAME,
    EMBEDDER_WEIGHTS_SHA256,
    Embedder,
    EmbedderUnavailable,
    MultilingualEmbedder,
)
from speedbench_plugin.data.io import qualitative_dir, qualitative_split_path, write_questions
from speedbench_plugin.data.pools import PoolReport, _seed, build_pool_builder, build_pools
from speedbench_plugin.data.schema import FIELDS, QUALITATIVE_CATEGORIES, Question
from speedbench_plugin.data.select import mean_pairwise_cosine, random_sample, select_diverse
from speedbench_plugin.data.sources import SourceLog, bigbench_available

DEFAULT_PER_CATEGORY = 80  # SPEED-Bench's qualitative split: 80 per category, 880 rows
MULTILINGUAL = "multilingual"
# Sub-categories of the multilingual pool that are not a bare language code (see data/pools.py).
_SUB_CATEGORY_LANGUAGE = {"es_science": "es", "fa_idiom": "fa", "cross_lingual": "mixed (WikiLingua)"}


def language_of(sub_category: str | None) -> str:
    """The prompt language a multilingual sub-category stands for (its ISO code, mostly)."""
    return _SUB_CATEGORY_LANGUAGE.get(sub_category or "-", sub_category or "-")


def dominant_script(text: str) -> str:
    """The Unicode script most of a text's letters are written in (LATIN, CYRILLIC, CJK, ...)."""
    scripts: Counter[str] = Counter()
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            scripts[name.split(" ")[0] if name else "UNKNOWN"] += 1
    if not scripts:
        return "NONE"
    script = scripts.most_common(1)[0][0]
    return {"HIRAGANA": "JAPANESE", "KATAKANA": "JAPANESE"}.get(script, script)


def multilingual_notes(pool: list[Question], chosen: list[Question]) -> dict[str, Any]:
    """Per-language and per-script counts of the candidates and the selection."""
    def count(questions: list[Question], key: Callable[[Question], str]) -> dict[str, int]:
        return dict(sorted(Counter(key(q) for q in questions).items(), key=lambda kv: (-kv[1], kv[0])))

    return {
        "languages_candidates": count(pool, lambda q: language_of(q.sub_category)),
        "languages_selected": count(chosen, lambda q: language_of(q.sub_category)),
        "scripts_candidates": count(pool, lambda q: dominant_script(q.text)),
        "scripts_selected": count(chosen, lambda q: dominant_script(q.text)),
    }


def _multilingual_embedder() -> tuple[Embedder | None, str | None]:
    embedder = MultilingualEmbedder()
    try:
        embedder.model  # noqa: B018 - fetch, check and load now, so a failure is reported once
    except (EmbedderUnavailable, OSError) as exc:
        return None, str(exc)
    return embedder, None


def manifest_path() -> Path:
    return qualitative_dir() / "manifest.json"


def build_qualitative(per_category: int = DEFAULT_PER_CATEGORY, seed: int = 0, progress: bool = True,
                      reselect: bool = False) -> dict[str, Any]:
    """Build and write the split and its manifest; returns the manifest.

    From the recorded selection (no embedding) when one is packaged for these settings, the pinned
    embedders and the corpora found now; else, or with ``reselect``, by the full selection."""
    why_select = "--reselect was given" if reselect else None
    selection = None if reselect else recorded.load()
    if selection is None and why_select is None:
        why_select = f"no recorded selection ({recorded.packaged_path()})"
    if selection is not None:
        why_select = selection.unusable_because(per_category, seed)
        if why_select is None:
            manifest = _rebuild_recorded(selection)
            if manifest is not None:
                return manifest
            why_select = "the source corpora differ from those the recorded selection was made from"
    why = why_select or "no usable recorded selection"
    print(f"qualitative split: running the full diversity selection ({why})", file=sys.stderr)
    return _select_and_build(per_category, seed, progress, why)


def _rebuild_recorded(selection: recorded.RecordedSelection) -> dict[str, Any] | None:
    """The split from the corpora and the recorded ids, each prompt checked; None if the corpora changed."""
    started = time.perf_counter()
    log = SourceLog()

    def no_embedding(texts: Sequence[str]) -> np.ndarray:
        raise AssertionError("a recorded selection needs no embedding")  # rag passages come from the record

    pools, report = build_pools(log, no_embedding, rag_passages=selection.rag_passages)
    corpus = recorded.corpus_sha256(log.entries)
    if corpus != selection.corpus_sha256:
        return None
    selected = selection.pick(pools)
    write_questions(qualitative_split_path(), selected)
    write_questions(qualitative_split_path().with_suffix(".parquet"), selected)
    manifest = _manifest(selected, log, selection.seed, selection.per_category, selection.categories)
    manifest |= {
        "selection": {"source": "recorded", "file": str(selection.path),
                      "how": "the recorded question ids picked from pools rebuilt from the corpora, each prompt's "
                             "sha256 checked against the record; nothing embedded (statistics are the full "
                             "selection's, from the record)",
                      "verified_prompts": len(selected)},
        "corpus_sha256": corpus,
        "rag_passages": {q: js for q, js in selection.rag_passages.items()},
        "pools_unavailable": report.unavailable,
        "build_seconds": {"total": round(time.perf_counter() - started, 2)},
        "all_categories_beat_random": all(c.get("selection_beats_random") for c in selection.categories.values()),
    }
    atomic_write_json(manifest_path(), manifest)
    return manifest


def _manifest(selected: list[Question], log: SourceLog, seed: int, per_category: int,
              categories: dict[str, Any]) -> dict[str, Any]:
    """The parts of the manifest both ways of building share."""
    return {
        "kind": "speedbench-qualitative",
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": [str(qualitative_split_path()), str(qualitative_split_path().with_suffix(".parquet"))],
        "schema": list(FIELDS),
        "seed": seed,
        "per_category_target": per_category,
        "rows": len(selected),
        "multiturn_rows": sum(q.multiturn for q in selected),
        "bigbench_extracted": bigbench_available(),
        "sources": log.entries,
        "sources_missing": log.missing,
        "categories": categories,
        "prompt_sha256": {q.question_id: sha256_text("\n\n".join(q.turns)) for q in selected},
    }


def _select_and_build(per_category: int, seed: int, progress: bool, why: str) -> dict[str, Any]:
    from tqdm import tqdm

    started = time.perf_counter()
    log = SourceLog()
    embedder = Embedder()
    multilingual, multilingual_missing = _multilingual_embedder()
    t0 = time.perf_counter()
    builder, report = build_pool_builder(log, lambda texts: embedder.embed(texts, progress="retrieval" if progress else None))
    pools = builder.pools
    t_pools = time.perf_counter() - t0

    t0 = time.perf_counter()
    texts = [q.text for category in QUALITATIVE_CATEGORIES for q in pools[category]]
    embedder.embed(texts, progress="candidates" if progress else None)  # one batched pass over everything
    if multilingual is not None:
        multilingual.embed([q.text for q in pools[MULTILINGUAL]], progress="multilingual" if progress else None)
        multilingual.save()
    t_embed = time.perf_counter() - t0
    embedder.save()

    t0 = time.perf_counter()
    selected: list[Question] = []
    categories: dict[str, Any] = {}
    for category in tqdm(QUALITATIVE_CATEGORIES, desc="select (Algorithm 1)", disable=not progress):
        pool = pools[category]
        used = multilingual if category == MULTILINGUAL and multilingual is not None else embedder
        vectors = used.embed([q.text for q in pool])
        chosen, stats = _select_category(category, pool, vectors, per_category, seed)
        selected.extend(chosen)
        categories[category] = {"embedder": used.name} | stats | _pool_notes(category, pool, chosen, report, per_category)
        if category == MULTILINGUAL:
            categories[category] |= multilingual_notes(pool, chosen)
            if used is not embedder:  # the same sets as MiniLM sees them, for comparison with older builds
                minilm = embedder.embed([q.text for q in pool])
                categories[category]["minilm_view"] = _cosines(minilm, pool, chosen, per_category, seed, category)
            else:
                categories[category]["multilingual_embedder_unavailable"] = multilingual_missing
    t_select = time.perf_counter() - t0

    write_questions(qualitative_split_path(), selected)
    write_questions(qualitative_split_path().with_suffix(".parquet"), selected)
    manifest = _manifest(selected, log, seed, per_category, categories) | {
        "selection_reason": why,
        "corpus_sha256": recorded.corpus_sha256(log.entries),
        "rag_passages": {q.question_id: builder.rag_passages[q.question_id]
                         for q in selected if q.question_id in builder.rag_passages},
        "embedder": {"name": EMBEDDER_NAME, "weights_sha256": EMBEDDER_WEIGHTS_SHA256,
                     "candidate_texts": len(set(texts)), "texts_embedded_by_this_build": embedder.computed},
        "multilingual_embedder": (
            multilingual.describe() | {"texts_embedded_by_this_build": multilingual.computed}
            if multilingual is not None else {"available": False, "reason": multilingual_missing,
                                              "used_instead": EMBEDDER_NAME}),
        "selection": {"source": "embedded",
                      "algorithm": "SPEED-Bench Algorithm 1: greedy min summed cosine from a seeded random start, "
                                   "then best-improvement swaps until none strictly improves (cap 50*k)",
                      "random_baseline": "seeded uniform sample of the same size from the same pool"},
        "build_seconds": {"sources_and_pools": round(t_pools, 2), "embedding": round(t_embed, 2),
                          "selection": round(t_select, 2), "embedding_plus_selection": round(t_embed + t_select, 2),
                          "total": round(time.perf_counter() - started, 2)},
        "all_categories_beat_random": all(c["selection_beats_random"] for c in categories.values()),
    }
    atomic_write_json(manifest_path(), manifest)
    return manifest


def _select_category(category: str, pool: list[Question], vectors: np.ndarray, k: int,
                     seed: int) -> tuple[list[Question], dict[str, Any]]:
    if len(pool) == 0:
        return [], {"candidates": 0, "selected": 0, "avg_pairwise_cosine_selected": None,
                    "avg_pairwise_cosine_random": None, "selection_beats_random": False}
    selection = select_diverse(vectors, k, seed=_seed("select", seed, category))
    chosen = [pool[i] for i in selection.indices]
    cosines = _cosines(vectors, pool, chosen, k, seed, category)
    return chosen, {
        "candidates": len(pool),
        "selected": len(chosen),
        **cosines,
        "avg_pairwise_cosine_pool": round(mean_pairwise_cosine(vectors), 4),
        # With the whole pool selected there is nothing to choose and the two figures coincide.
        "selection_beats_random": bool(cosines["avg_pairwise_cosine_selected"] < cosines["avg_pairwise_cosine_random"]),
        "objective_greedy": round(selection.greedy_objective, 4),
        "objective_final": round(selection.objective, 4),
        "swaps": selection.swaps,
        "swaps_converged": selection.converged,
    }


def _cosines(vectors: np.ndarray, pool: list[Question], chosen: list[Question], k: int, seed: int,
             category: str) -> dict[str, Any]:
    """Average pairwise cosine of a selection and of the seeded random baseline, under ``vectors``."""
    index = {id(q): i for i, q in enumerate(pool)}
    baseline = random_sample(len(pool), k, seed=_seed("random", seed, category))
    return {"avg_pairwise_cosine_selected": round(mean_pairwise_cosine(vectors[[index[id(q)] for q in chosen]]), 4),
            "avg_pairwise_cosine_random": round(mean_pairwise_cosine(vectors[baseline]), 4)}


def _sources_missing(reasons: Sequence[str]) -> str:
    """``name: reason`` lines grouped by reason, so one cause over many sources is said once."""
    by_reason: dict[str, list[str]] = {}
    for line in reasons:
        name, _, reason = line.partition(": ")
        by_reason.setdefault(reason, []).append(name)
    return "; ".join(f"{reason} ({', '.join(names)})" for reason, names in by_reason.items())


def _pool_notes(category: str, pool: list[Question], chosen: list[Question], report: PoolReport, target: int) -> dict[str, Any]:
    notes: dict[str, Any] = {
        "sub_categories_candidates": report.counts.get(category, {}),
        "sub_categories_selected": dict(Counter(q.sub_category or "-" for q in chosen)),
        "multiturn_selected": sum(q.multiturn for q in chosen),
        "duplicates_dropped": report.duplicates_dropped.get(category, 0),
        "short_by": max(0, target - len(chosen)),
    }
    if report.unavailable.get(category):
        notes["sources_unavailable"] = report.unavailable[category]
    if notes["short_by"]:
        why = _sources_missing(report.unavailable.get(category, [])) or "the installed sources give no more candidates"
        notes["why_short"] = f"only {len(pool)} candidates: {why}"
    elif len(pool) <= target:
        notes["why_no_choice"] = "the pool is no larger than the target, so every candidate is kept"
    return notes


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    lines = [(f"qualitative split: {manifest['rows']} rows ({manifest['multiturn_rows']} multi-turn), "
              f"built {manifest['built_at']}, seed {manifest['seed']}")]
    lines.append(f"  {'category':<14}{'cands':>6}{'sel':>5}{'short':>6}{'cos sel':>9}{'cos rand':>9}  beats")
    for category, c in manifest["categories"].items():
        lines.append(f"  {category:<14}{c['candidates']:>6}{c['selected']:>5}{c['short_by']:>6}"
                     f"{c['avg_pairwise_cosine_selected'] or float('nan'):>9.3f}"
                     f"{c['avg_pairwise_cosine_random'] or float('nan'):>9.3f}  {'yes' if c['selection_beats_random'] else 'NO'}")
    seconds = manifest["build_seconds"]
    selection = manifest.get("selection", {})
    if selection.get("source") == "recorded":
        lines.append(f"  selection: recorded ({selection['file']}): {selection['verified_prompts']} prompts rebuilt "
                     f"from the corpora, each sha256 checked, nothing embedded; the statistics above are the "
                     f"recorded full selection's; {seconds['total']} s")
    else:
        lines.append(f"  times (s): pools {seconds['sources_and_pools']}, embedding {seconds['embedding']}, "
                     f"selection {seconds['selection']}, total {seconds['total']}")
    multi = manifest["categories"].get(MULTILINGUAL)
    if multi and "languages_selected" in multi:
        lines.append(f"  multilingual ({multi.get('embedder', EMBEDDER_NAME)}): "
                     + ", ".join(f"{lang} {n}" for lang, n in multi["languages_selected"].items()))
        lines.append("  multilingual scripts: " + ", ".join(f"{s} {n}" for s, n in multi["scripts_selected"].items()))
    if manifest.get("sources_missing"):
        lines.append(f"  missing sources: {manifest['sources_missing']}")
    return lines
