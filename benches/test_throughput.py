"""SPEED-Bench throughput split: serving speed per input-length bucket, entropy tier, concurrency and
drafter; the draft-length sweep and its vLLM dynamic-SD table, validated by a run with that table.

Analysis (speedups, Pareto PNGs, random vs real, SmartSpec, SSSD) happens at the end of the session
in ``speedbench_plugin.throughput.report``; these tests measure and attach what it needs.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from speedbench_plugin.case import CaseRunner, EngineUnderTest
from speedbench_plugin.engines.base import Sampling
from speedbench_plugin.runner import EngineHost, WorkItem, run_round
from speedbench_plugin.throughput.analysis import DYNAMIC_OPTION, draft_length_analyses, family_of
from speedbench_plugin.throughput.dynamic import max_k, validate_table
from speedbench_plugin.throughput.profile import DEFAULT_SIZES, profile_prefill
from speedbench_plugin.throughput.report import PROFILE_PROPERTY
from speedbench_plugin.throughput.steps import decode_goodput, reconstruct_steps, tap_streams

pytestmark = pytest.mark.throughput

WARMUP_MAX_TOKENS = 8
WARMUP_REQUESTS = 2
PROFILE_REPEATS = 3


def _sampling(settings: Any) -> Sampling:
    # ignore_eos: every tier and drafter then produces the same number of tokens, so TPS compares equal work.
    return Sampling(max_tokens=settings.max_tokens, temperature=settings.temperature, ignore_eos=True)


def _items(prompts: list[Any]) -> list[WorkItem]:
    return [WorkItem(p.question_id, p.tier, prompt_ids=p.prompt_ids) for p in prompts]


def _warm_up(host: EngineHost, bucket: int, concurrency: int, vocab: int) -> None:
    """One short unmeasured round on fresh random prompts of the bucket's length (never the measured
    prompts, which would then hit the prefix cache): the engine's first passes at this prompt
    length pay one-off allocations. Capped at WARMUP_REQUESTS so a CPU sweep stays affordable."""
    rng = random.Random(f"warmup-{bucket}-{concurrency}")
    n = min(concurrency, WARMUP_REQUESTS)
    items = [WorkItem(f"warmup-{bucket}-c{concurrency}-{i}-{rng.random():.6f}", "warmup",
                      prompt_ids=tuple(rng.randrange(100, vocab) for _ in range(bucket))) for i in range(n)]
    host.run(run_round(host.engine, None, items, Sampling(WARMUP_MAX_TOKENS, ignore_eos=True), n))


def _vocab(tokenizer: Any) -> int:
    return len(tokenizer.tokenizer)


def _attach_throughput(record: dict[str, Any], streams: list[Any], k: int, tensor_parallel_size: int) -> None:
    """Per-GPU TPS and the reconstructed decode steps (see throughput/steps.py for the approximations)."""
    import pandas as pd

    by_round: dict[str, list[Any]] = {}
    for stream in streams:
        by_round.setdefault(stream.request_id.rsplit("-r", 1)[-1], []).append(stream)
    frames, infos = [], []
    for round_streams in by_round.values():
        frame, info = reconstruct_steps(round_streams, k)
        frames.append(frame)
        infos.append(info)
    steps = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    pure = steps[steps["pure_decode"]] if len(steps) else steps
    output_tps = record.get("output_tps")
    record["throughput"] = {
        "tensor_parallel_size": tensor_parallel_size,
        "output_tps_per_gpu": output_tps / tensor_parallel_size if output_tps else None,
        "decode_goodput": decode_goodput(steps) if len(steps) else None,
        "steps_reconstructed": len(steps),
        "pure_decode_steps": len(pure),
        "split_clusters": sum(i.get("split_clusters", 0) for i in infos),
        "decode_steps": pure[["batched_tokens", "context_tokens", "step_s", "tokens"]].to_dict("records") if len(pure) else [],
    }


def _measure(case: CaseRunner, target: EngineUnderTest, items: list[WorkItem], bucket: int, tier: str,
             concurrency: int, tp_size: int, drafter_label: str | None = None) -> dict[str, Any]:
    settings = target.settings
    _warm_up(target.host, bucket, concurrency, _vocab(target.tokenizer))
    k = target.drafter.k if target.drafter.enabled else 0
    with tap_streams(target.host.engine) as streams:
        record = case.run(items, split="throughput", labels={"bucket": bucket, "tier": tier}, concurrency=concurrency,
                          sampling=_sampling(settings), drafter_label=drafter_label)
    _attach_throughput(record, list(streams), k, tp_size)
    return record


def _case_items(prompts: list[Any], per_cell: int, concurrency: int) -> list[WorkItem]:
    """``per_cell`` prompts, but never fewer than the concurrency: the case must reach its load."""
    chosen = prompts[: max(per_cell, concurrency)]
    if len(chosen) < concurrency:
        pytest.skip(f"{len(chosen)} prompts cannot load concurrency {concurrency}")
    return _items(chosen)


def test_throughput(sb_case, sb_engine, sb_concurrency, tp_bucket, tp_tier, tp_prompts, tp_settings):
    if not tp_prompts:
        pytest.skip(f"no throughput prompts for bucket {tp_bucket}, tier {tp_tier}")
    items = _case_items(tp_prompts, tp_settings.per_cell, sb_concurrency)
    _measure(sb_case, sb_engine, items, tp_bucket, tp_tier, sb_concurrency, tp_settings.tensor_parallel_size)


def test_step_profile(request, sb_engine, sb_tokenizer):
    """SSSD's knee: forward-pass time against batched tokens (runs with the ``none`` drafter only)."""
    sizes = [s for s in DEFAULT_SIZES if s < sb_tokenizer.context_length]
    rows = profile_prefill(sb_engine.host, sizes, PROFILE_REPEATS, _vocab(sb_tokenizer))
    assert len(rows) == len(sizes), "some profile requests failed"
    request.node.user_properties.append((PROFILE_PROPERTY, rows))


# --- the dynamic-table validation -----------------------------------------------------------------


@pytest.fixture(scope="session")
def tp_dynamic_engines() -> Iterator[dict[str, Any]]:
    """At most one dynamic-table engine alive at a time, keyed by drafter family and table."""
    live: dict[str, Any] = {}
    yield live
    for host in live.values():
        host.close()


def _dynamic_engine(live: dict[str, Any], family: Any, table: list[tuple[int, int, int]], settings: Any, model: str) -> tuple[EngineHost, Any]:
    from speedbench_plugin.drafters import DrafterSpec
    from speedbench_plugin.engines import EngineConfig, create_engine
    from speedbench_plugin.engines.vllm import speculative_config
    from speedbench_plugin.plugin import resolve_drafter

    drafter = DrafterSpec(family.method, max(1, max_k(table)), family.model,
                          tuple(sorted(dict(family.options, **{DYNAMIC_OPTION: 1}).items())))
    key = f"{drafter.id}:{table}"
    if key not in live:
        for old in list(live):
            live.pop(old).close()
        resolved = resolve_drafter(drafter)
        spec = dict(speculative_config(resolved) or {}, num_speculative_tokens_per_batch_size=[list(e) for e in table])
        engine = create_engine(settings.engine, EngineConfig(model, resolved, {**settings.engine_args, "speculative_config": spec}))
        host = EngineHost(engine)
        try:
            host.start()
        except Exception as exc:  # noqa: BLE001 - a table the engine rejects fails this case with vLLM's message
            host.close()
            pytest.fail(f"vLLM rejected the dynamic table {table}: {exc}", pytrace=False)
        live[key] = host
    return live[key], drafter


def test_dynamic_table(request, benchmark, tp_family, tp_bucket, tp_tier, sb_concurrency, tp_prompts, tp_settings,
                       sb_settings, sb_model, sb_model_sha, sb_tokenizer, tp_dynamic_engines):
    """One run with the emitted ``num_speculative_tokens_per_batch_size`` table; the report puts its
    TPS next to the best fixed k's at the same concurrency."""
    if sb_settings.engine != "vllm":
        pytest.skip("dynamic SD tables are a vLLM feature (speculative_config num_speculative_tokens_per_batch_size)")
    if not tp_settings.draft_lengths:
        pytest.skip("no draft-length sweep: pass --speedbench-draft-lengths 1,2,3,4")
    if tp_tier == "random":
        pytest.skip("the dynamic table is validated on real inputs only")
    report = request.config.pluginmanager.getplugin("speedbench-throughput-report")
    family = family_of(tp_family.with_k(1).id)
    found = [a for a in draft_length_analyses(report.records, report.profiles)
             if (a.bucket, a.tier, a.family) == (tp_bucket, tp_tier, family) and a.dynamic_table]
    if not found:
        pytest.skip(f"no finished sweep for {tp_bucket}/{tp_tier}/{family} in this process (the validation "
                    "reads the sweep's records; it cannot run under pytest-xdist)")
    table = found[0].dynamic_table
    validate_table(table)
    host, drafter = _dynamic_engine(tp_dynamic_engines, tp_family, table, sb_settings, sb_model)
    target = EngineUnderTest(host, sb_settings, drafter, sb_model, sb_model_sha, sb_tokenizer)
    label = f"{family}:dynamic{[list(e) for e in table]}"
    items = _case_items(tp_prompts, tp_settings.per_cell, sb_concurrency)
    record = _measure(CaseRunner(request.node, benchmark, target), target, items, tp_bucket, tp_tier,
                      sb_concurrency, tp_settings.tensor_parallel_size, drafter_label=label)
    record["throughput"]["dynamic_table"] = [list(e) for e in table]
