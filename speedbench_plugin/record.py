"""The per-case record: typed, immutable, built once from the raw rounds; every output reads it.

Figures are computed only in :mod:`speedbench_plugin.metrics`; this module decides which of them
the record holds and where they came from. Extensions (the throughput analyses, the regression
gate, a report) add their own *sections* through the ``pytest_speedbench_update_record`` and
``pytest_speedbench_session_sections`` hooks; they never change a figure the core computed.

``to_json`` gives the dict that lands in ``benchmark.extra_info["speedbench"]``, the suite's results
file, the journal and baselines; ``Record.from_json`` reads it back (schema-checked).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from array import array
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from speedbench_plugin import metrics as m
from speedbench_plugin.cache import nan_to_none
from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.engines.base import CeilingRun, SpecCounts, StreamResult

SCHEMA_VERSION = 2


class RecordSchemaError(ValueError):
    """A results file written by another speedbench record schema."""


def prompt_sha256(prompt_ids: Sequence[int]) -> str:
    """sha256 of the prompt's token ids (little-endian int32): two runs, on two engines, can prove
    they fed identical inputs."""
    return hashlib.sha256(array("i", prompt_ids).tobytes()).hexdigest()


def _num(value: float | None) -> float | None:
    """NaN (an undefined figure: 0/0, no samples) is stored as None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _nums(values: Sequence[float]) -> list[float | None]:
    return [_num(v) for v in values]


# --- the parts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseKey:
    """What was measured: the case's identity and workload."""

    case_id: str
    nodeid: str
    split: str
    engine: str
    engine_version: str
    model: str
    model_sha: str
    model_identity: str  # how model_sha was derived: weights-sha256, hf-blob-names, served-model, ...
    drafter: DrafterSpec
    concurrency: int
    max_tokens: int
    temperature: float
    rounds: int
    category: str | None = None
    bucket: int | None = None
    tier: str | None = None
    devices: str | None = None  # the accelerators this case's engine was pinned to, if any
    dynamic_table: list[list[int]] | None = None  # vLLM's per-batch-size k table, when the drafter ran with one
    arrival: str | None = None  # open-loop arrival pattern (speedbench_plugin.load), e.g. "2/s poisson"
    # Conversations: later turns after the engine's "own" answers or a "reference"'s (speedbench_plugin.multiturn)
    multiturn: str | None = None
    multiturn_reference: str | None = None
    multiturn_reference_sha256: str | None = None

    @property
    def k(self) -> int:
        return self.drafter.k if self.drafter.enabled else 0

    @property
    def cell(self) -> str:
        """Category, or bucket/tier."""
        return self.category if self.category is not None else f"{self.bucket}/{self.tier}"

    @property
    def label(self) -> str:
        """The cell, and the arrival pattern of an open-loop case."""
        return f"{self.cell} {self.arrival}" if self.arrival else self.cell

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["drafter"] = str(self.drafter)
        out["drafter_id"] = self.drafter.id
        out["drafter_method"] = self.drafter.method
        out["k"] = self.k
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseKey:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        values["drafter"] = DrafterSpec.parse(str(data["drafter"]))
        return cls(**values)


@dataclass(frozen=True)
class CounterSummary:
    """One source of the engine's own counters, with the figures vLLM's conventions give them."""

    source: str
    num_drafts: int
    num_draft_tokens: int
    num_accepted_tokens: int
    accepted_per_pos: list[int]
    num_steps: int | None
    acceptance_length_drafting_steps: float | None
    acceptance_rate: float | None
    per_position_acceptance_rates: list[float | None]
    conditional_acceptance_rates: list[float | None]

    @classmethod
    def of(cls, counts: SpecCounts, k: int) -> CounterSummary:
        per_position = m.per_position_from_counts(counts, k)
        return cls(
            source=counts.source,
            num_drafts=counts.num_drafts,
            num_draft_tokens=counts.num_draft_tokens,
            num_accepted_tokens=counts.num_accepted_tokens,
            accepted_per_pos=list(counts.accepted_per_pos),
            num_steps=counts.num_steps,
            acceptance_length_drafting_steps=_num(m.acceptance_length_drafting_steps(counts)),
            acceptance_rate=_num(m.acceptance_rate(counts)),
            per_position_acceptance_rates=_nums(per_position),
            conditional_acceptance_rates=_nums(m.conditional_acceptance(per_position)),
        )

    def counts(self) -> SpecCounts:
        return SpecCounts(self.num_drafts, self.num_draft_tokens, self.num_accepted_tokens,
                          list(self.accepted_per_pos), self.source, self.num_steps)


@dataclass(frozen=True)
class Counters:
    """The engine's counters per source: ``per_request`` (summed per-request metrics, preferred: they
    cover exactly the measured requests) and ``global`` (cumulative deltas around each round)."""

    source: str | None  # the preferred source that AR and the drafting-step figures come from
    per_request: CounterSummary | None = None
    global_: CounterSummary | None = None
    note: str | None = None  # why a source is missing

    @property
    def preferred(self) -> CounterSummary | None:
        return self.per_request or self.global_

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "per_request": dataclasses.asdict(self.per_request) if self.per_request else None,
            "global": dataclasses.asdict(self.global_) if self.global_ else None,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counters:
        def summary(value: Any) -> CounterSummary | None:
            return CounterSummary(**value) if value else None

        return cls(data.get("source"), summary(data.get("per_request")), summary(data.get("global")), data.get("note"))


@dataclass(frozen=True)
class Acceptance:
    """Draft quality. ``histogram_source`` names where the step histogram (and so AL, pp, CAR) came
    from: the engine's per-step record, or the stream (then ``stream_merged`` says whether merged
    chunks make them overstate acceptance)."""

    histogram_source: str  # "engine:<source>" or "stream"
    acceptance_length: float | None
    acceptance_length_stream: float | None
    acceptance_length_stream_request_mean: float | None  # mean over requests of each one's stream decode AL
    acceptance_length_drafting_steps: float | None  # from counters (vLLM's convention)
    acceptance_rate: float | None  # from counters only: a stream cannot know what was drafted
    step_histogram: list[int]
    stream_step_histogram: list[int]
    per_position_acceptance_rates: list[float | None]
    conditional_acceptance_rates: list[float | None]
    per_position_acceptance_rates_drafting_steps: list[float | None] | None
    conditional_acceptance_rates_drafting_steps: list[float | None] | None
    steps: int  # decode steps, from histogram_source
    step_tokens: int  # what those steps emitted: AL = step_tokens / steps
    stream_steps: int
    stream_decode_tokens: int
    output_tokens: int
    merged_chunks: int
    merge_rate: float | None
    stream_merged: bool
    # The neighbouring tools' ALs on the same run (README "AL conventions"); None where their inputs
    # are missing (no per-request counters: no AIPerf figures).
    acceptance_length_specdec_bench: float | None = None
    acceptance_length_vllm_bench: float | None = None  # 1 + accepted / drafts, pooled (vLLM bench serve)
    acceptance_length_vllm_bench_source: str | None = None  # the counters it came from
    acceptance_length_aiperf_request_mean: float | None = None
    acceptance_length_aiperf_token_weighted: float | None = None
    acceptance_rate_request_mean: float | None = None  # AIPerf's: mean over requests of accepted / drafted
    requests_without_drafts: int = 0  # left out of the per-request vLLM/AIPerf means (no AL of theirs)


# Read from records written before the field said what it is (it was never specdec_bench's figure).
_LEGACY_ACCEPTANCE_KEYS = {"acceptance_length_request_mean": "acceptance_length_stream_request_mean"}


def _acceptance_from_json(data: Mapping[str, Any]) -> Acceptance:
    return Acceptance(**{_LEGACY_ACCEPTANCE_KEYS.get(key, key): value for key, value in data.items()})


@dataclass(frozen=True)
class Speed:
    output_tps: float | None
    output_tps_rounds: list[float | None]
    output_tps_per_gpu: float | None
    tensor_parallel_size: int
    user_tps_median: float | None
    user_tps_p10: float | None
    user_tps_p90: float | None
    ttft_median_s: float | None
    ttft_p99_s: float | None
    tpot_median_s: float | None
    step_latency_p50_s: float | None
    step_latency_p90_s: float | None
    step_latency_p99_s: float | None
    wall_time_s_rounds: list[float]
    client_cpu_us_per_output: float | None
    engine_ceiling_tps: float | None = None
    engine_ceiling_path: str | None = None  # what ran for the ceiling, or why there is none
    ceiling_cpu_us_per_output: float | None = None  # the same process's CPU per output on that path
    harness_efficiency: float | None = None
    client_bound: bool = False
    client_bound_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RequestRow:
    """One request (one turn of one question, in one round): raw counts, no derived judgement."""

    question_id: str
    turn: int
    round: int
    prompt_sha256: str | None
    prompt_tokens: int
    output_tokens: int
    error: str | None = None
    finish_reason: str | None = None
    steps: int = 0  # decode steps from the record's histogram_source
    step_tokens: int = 0  # what they emitted (the AL numerator)
    step_histogram: list[int] = field(default_factory=list)
    stream_steps: int = 0
    stream_decode_tokens: int = 0
    stream_step_histogram: list[int] = field(default_factory=list)
    merged_chunks: int = 0
    ttft_s: float | None = None
    tpot_s: float | None = None
    user_tps: float | None = None
    decode_time_s: float | None = None
    counters: dict[str, Any] | None = None  # per-request SpecCounts, where the engine gives them
    output_sha256: str | None = None  # sha256 of the output token ids: same hash, same tokens
    chunk_tokens: list[int] = field(default_factory=list)  # tokens per streamed chunk, in order
    eos_at_end: bool = False  # the last delivered token is an end-of-sequence token
    acceptance_length_specdec_bench: float | None = None  # this request's, by specdec_bench's rule
    acceptance_length_vllm: float | None = None  # 1 + accepted / drafts from its own counters


# --- the record --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    case: CaseKey
    engine: dict[str, Any]  # Engine.describe(): version, capabilities, what is missing and why
    acceptance: Acceptance
    speed: Speed
    counters: Counters
    fidelity: dict[str, m.FidelityCheck]  # per counter source: "per_request", "global"
    errors: tuple[str, ...]
    requests: tuple[RequestRow, ...]
    sections: Mapping[str, Any] = field(default_factory=dict)
    outcome: str | None = None  # the test's outcome, attached by the collector
    schema: int = SCHEMA_VERSION
    outputs_sha256: str | None = None  # one hash over every request's output hash (metrics.outputs_sha256)

    @property
    def case_id(self) -> str:
        return self.case.case_id

    def with_sections(self, sections: Mapping[str, Any]) -> Record:
        """A new record with more sections; a section is written once (no extension overwrites another's)."""
        clash = set(sections) & set(self.sections)
        if clash:
            raise ValueError(f"record {self.case_id}: section(s) {', '.join(sorted(clash))} already set")
        return dataclasses.replace(self, sections={**self.sections, **sections})

    def with_outcome(self, outcome: str) -> Record:
        return dataclasses.replace(self, outcome=outcome)

    def section(self, name: str) -> Any:
        return self.sections.get(name)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": self.schema,
            "case": self.case.to_json(),
            "engine": dict(self.engine),
            "acceptance": dataclasses.asdict(self.acceptance),
            "speed": dataclasses.asdict(self.speed),
            "counters": self.counters.to_json(),
            "fidelity": {name: dataclasses.asdict(check) for name, check in self.fidelity.items()},
            "errors": list(self.errors),
            "requests": [dataclasses.asdict(row) for row in self.requests],
            "sections": dict(self.sections),
            "outcome": self.outcome,
            "outputs_sha256": self.outputs_sha256,
        }
        clean: dict[str, Any] = nan_to_none(data)
        return clean

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "record") -> Record:
        schema = data.get("schema") if isinstance(data, Mapping) else None
        if schema != SCHEMA_VERSION:
            raise RecordSchemaError(
                f"{where}: record schema {schema!r}, but this speedbench reads schema {SCHEMA_VERSION}; "
                "re-run the benchmark with this version to get comparable records"
            )
        try:
            return cls(
                case=CaseKey.from_json(data["case"]),
                engine=dict(data.get("engine") or {}),
                acceptance=_acceptance_from_json(data["acceptance"]),
                speed=Speed(**data["speed"]),
                counters=Counters.from_json(data["counters"]),
                fidelity={name: m.FidelityCheck(**check) for name, check in (data.get("fidelity") or {}).items()},
                errors=tuple(data.get("errors") or ()),
                requests=tuple(RequestRow(**row) for row in data.get("requests") or ()),
                sections=dict(data.get("sections") or {}),
                outcome=data.get("outcome"),
                outputs_sha256=data.get("outputs_sha256"),
            )
        except (KeyError, TypeError) as exc:
            raise RecordSchemaError(f"{where}: not a speedbench record of schema {SCHEMA_VERSION} ({exc})") from None


# --- building it once --------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredRequest:
    """What the runner hands over per request: the stream and the prompt it was fed."""

    question_id: str
    turn: int
    round: int
    prompt_sha256: str | None
    stream: StreamResult
    prompt_ids: tuple[int, ...] | None = field(default=None, repr=False)  # kept in memory only
    t_scheduled: float | None = None  # open loop: when the arrival schedule said to send it (perf_counter)
    t_sent: float | None = None  # open loop: when the client acted on the schedule


@dataclass(frozen=True)
class MeasuredRound:
    requests: tuple[MeasuredRequest, ...]
    t_start: float
    t_end: float
    cpu_s: float | None  # the benchmark process's CPU time during the round
    counters: SpecCounts | None  # the engine's cumulative counters' delta over the round
    client: dict[str, Any] | None = None  # the load generator's observations of itself (speedbench_plugin.load)
    counters_note: str | None = None  # why ``counters`` is None, when reading them failed
    telemetry: dict[str, Any] | None = None  # the sampler's figures for this round (speedbench_plugin.telemetry)

    @property
    def streams(self) -> list[StreamResult]:
        return [r.stream for r in self.requests if r.stream.error is None]


@dataclass(frozen=True)
class ClientBoundPolicy:
    """When a case's speed figures are the client's, not the engine's."""

    min_efficiency: float = 0.9


def _counters(rounds: Sequence[MeasuredRound], streams: Sequence[StreamResult], k: int) -> Counters:
    global_: CounterSummary | None = None
    deltas = [r.counters for r in rounds if r.counters is not None]
    notes: list[str] = []
    if deltas and len(deltas) == len(rounds):
        global_ = CounterSummary.of(SpecCounts.total(deltas, deltas[0].source), k)
    elif deltas:
        notes.append(f"cumulative counters missing for {len(rounds) - len(deltas)} of {len(rounds)} rounds")
    notes.extend(dict.fromkeys(r.counters_note for r in rounds if r.counters_note))
    per_request: CounterSummary | None = None
    spec = [s.spec for s in streams if s.spec is not None]
    if spec and len(spec) < len(streams):
        # A partial sum would open a false gap against the stream's steps: report it, use none.
        notes.append(f"per-request counters missing for {len(streams) - len(spec)} of {len(streams)} requests")
    elif spec:
        per_request = CounterSummary.of(SpecCounts.total(spec, spec[0].source), k)
    if per_request is None and global_ is None and not notes:
        notes.append("no drafter" if not k else "the engine reported no SD counters")
    preferred = per_request or global_
    return Counters(preferred.source if preferred else None, per_request, global_, "; ".join(notes) or None)


def _conventions(streams: Sequence[StreamResult], k: int, counters: Counters,
                 eos_token_ids: Collection[int]) -> dict[str, Any]:
    """The neighbouring tools' ALs (Acceptance's ``*_specdec_bench``, ``*_vllm_bench``, ``*_aiperf_*``)."""
    if not k or not streams:
        return {}
    specdec = [m.specdec_bench_request_al([c.n_tokens for c in s.chunks], m.ends_with_eos(s.output_ids, eos_token_ids))
               for s in streams]
    pooled = counters.global_ or counters.per_request  # vLLM's client reads the engine-wide counters
    out: dict[str, Any] = {
        "acceptance_length_specdec_bench": _num(m.request_mean(specdec)),
        "acceptance_length_vllm_bench": pooled.acceptance_length_drafting_steps if pooled else None,
        "acceptance_length_vllm_bench_source": pooled.source if pooled else None,
    }
    if counters.per_request is not None:  # every stream has its own counters
        spec = [s.spec for s in streams if s.spec is not None]
        per_request = [m.vllm_al(c.num_accepted_tokens, c.num_drafts) for c in spec]
        out.update(
            acceptance_length_aiperf_request_mean=_num(m.request_mean(per_request)),
            acceptance_length_aiperf_token_weighted=_num(
                m.token_weighted_mean(per_request, [s.output_tokens for s in streams])),
            acceptance_rate_request_mean=_num(m.request_mean(
                m.request_acceptance_rate(c.num_accepted_tokens, c.num_draft_tokens) for c in spec)),
            requests_without_drafts=sum(1 for c in spec if not c.num_drafts),
        )
    return out


def _acceptance(streams: Sequence[StreamResult], k: int, counters: Counters,
                eos_token_ids: Collection[int] = ()) -> tuple[Acceptance, list[list[int]]]:
    stream_steps = m.StreamSteps.pool(streams, k)
    engine_histograms = [m.engine_step_histogram(s, k) for s in streams]
    use_engine = bool(k) and bool(streams) and all(h is not None for h in engine_histograms)
    if use_engine:
        per_request = [h or [] for h in engine_histograms]
        histogram = m.pool_histograms(per_request, k)
        source = f"engine:{streams[0].steps.source if streams[0].steps else '?'}"
        # AL = 1 + sum(pp) over the engine's steps: drafts accepted but cut at a request's end count.
        steps, step_tokens = m.histogram_steps(histogram), m.histogram_tokens(histogram)
    else:
        per_request = [m.step_length_histogram(m.decode_step_lengths(s), k) for s in streams]
        histogram = m.pool_histograms(per_request, k)
        source = "stream"
        steps, step_tokens = stream_steps.steps, stream_steps.decode_tokens
    per_position = m.per_position_from_histogram(histogram) if k else []
    preferred = counters.preferred
    acceptance = Acceptance(
        histogram_source=source,
        acceptance_length=_num(m.acceptance_length(step_tokens, steps)),
        acceptance_length_stream=_num(m.acceptance_length_of(stream_steps)),
        acceptance_length_stream_request_mean=_num(m.acceptance_length_stream_request_mean(streams)),
        acceptance_length_drafting_steps=preferred.acceptance_length_drafting_steps if preferred else None,
        acceptance_rate=preferred.acceptance_rate if preferred else None,
        step_histogram=histogram,
        stream_step_histogram=list(stream_steps.histogram),
        per_position_acceptance_rates=_nums(per_position),
        conditional_acceptance_rates=_nums(m.conditional_acceptance(per_position)),
        per_position_acceptance_rates_drafting_steps=preferred.per_position_acceptance_rates if preferred else None,
        conditional_acceptance_rates_drafting_steps=preferred.conditional_acceptance_rates if preferred else None,
        steps=steps,
        step_tokens=step_tokens,
        stream_steps=stream_steps.steps,
        stream_decode_tokens=stream_steps.decode_tokens,
        output_tokens=sum(s.output_tokens for s in streams),
        merged_chunks=stream_steps.merged_chunks,
        merge_rate=_num(m.merge_rate(stream_steps.merged_chunks, stream_steps.steps)),
        stream_merged=stream_steps.merged_chunks > 0,
        **_conventions(streams, k, counters, eos_token_ids),
    )
    return acceptance, per_request


def _fidelity(streams: Sequence[StreamResult], k: int, counters: Counters) -> dict[str, m.FidelityCheck]:
    out: dict[str, m.FidelityCheck] = {}
    steps = m.StreamSteps.pool(streams, k)
    if not steps.steps:
        return out
    cuts = [m.accepted_cut_at_end(s) for s in streams]
    exact_cut = None if any(c is None for c in cuts) else sum(c or 0 for c in cuts)
    bound = m.end_cut_bound(streams, k)
    if counters.per_request is not None:
        out["per_request"] = m.fidelity(steps, counters.per_request.counts(), cut_at_end=exact_cut, bound=bound)
    if counters.global_ is not None:
        out["global"] = m.fidelity(steps, counters.global_.counts(), cut_at_end=exact_cut, bound=bound)
    return out


def _speed(rounds: Sequence[MeasuredRound], streams: Sequence[StreamResult], steps: int, k: int,
           tensor_parallel_size: int, policy: ClientBoundPolicy, ceiling: CeilingRun | str | None) -> Speed:
    round_tps = [m.output_tps(r.streams) for r in rounds]
    output_tps = m.median(round_tps)
    ceiling_tps = ceiling.tps if isinstance(ceiling, CeilingRun) else math.nan
    efficiency = m.harness_efficiency(output_tps, ceiling_tps)
    cpu = [r.cpu_s for r in rounds]
    # One engine output per request for its prefill and one per decode step: the engine's steps where
    # it recorded them, else the fewest steps the chunks can have come from (exact without a drafter).
    outputs = len(streams) + max(steps, sum(m.fewest_steps(s, k) for s in streams))
    client_us = m.client_cpu_us_per_output(sum(c for c in cpu if c is not None), outputs) if all(
        c is not None for c in cpu) else math.nan
    reasons = []
    if not math.isnan(efficiency) and efficiency < policy.min_efficiency:
        reasons.append(f"harness efficiency {efficiency:.2f} < {policy.min_efficiency:.2f}: the client, not the engine, "
                       "set the pace")
    step_latency = [lat for s in streams for lat in m.step_latencies(s, k)]
    user = [m.user_tps(s) for s in streams]
    ttfts = [m.ttft(s) for s in streams]
    return Speed(
        output_tps=_num(output_tps),
        output_tps_rounds=_nums(round_tps),
        output_tps_per_gpu=_num(m.ratio(output_tps, tensor_parallel_size)),
        tensor_parallel_size=tensor_parallel_size,
        user_tps_median=_num(m.percentile(user, 50)),
        user_tps_p10=_num(m.percentile(user, 10)),
        user_tps_p90=_num(m.percentile(user, 90)),
        ttft_median_s=_num(m.percentile(ttfts, 50)),
        ttft_p99_s=_num(m.percentile(ttfts, 99)),
        tpot_median_s=_num(m.percentile([m.tpot(s) for s in streams], 50)),
        step_latency_p50_s=_num(m.percentile(step_latency, 50)),
        step_latency_p90_s=_num(m.percentile(step_latency, 90)),
        step_latency_p99_s=_num(m.percentile(step_latency, 99)),
        wall_time_s_rounds=[r.t_end - r.t_start for r in rounds],
        client_cpu_us_per_output=_num(client_us),
        engine_ceiling_tps=_num(ceiling_tps),
        engine_ceiling_path=ceiling.path if isinstance(ceiling, CeilingRun) else ceiling,
        # The ceiling ran one round's prompts: per output of one round.
        ceiling_cpu_us_per_output=_num(m.client_cpu_us_per_output(ceiling.cpu_s, outputs // max(1, len(rounds))))
        if isinstance(ceiling, CeilingRun) else None,
        harness_efficiency=_num(efficiency),
        client_bound=bool(reasons),
        client_bound_reasons=reasons,
    )


def _request_row(request: MeasuredRequest, k: int, histogram: list[int] | None,
                 eos_token_ids: Collection[int] = ()) -> RequestRow:
    """``histogram``: the request's engine step histogram when the record uses the engine's record."""
    stream = request.stream
    row = RequestRow(request.question_id, request.turn, request.round, request.prompt_sha256,
                     stream.prompt_tokens, stream.output_tokens, error=stream.error)
    if stream.error:
        return row
    chunk_tokens = [c.n_tokens for c in stream.chunks]
    eos_at_end = m.ends_with_eos(stream.output_ids, eos_token_ids)
    spec = stream.spec
    lengths = m.decode_step_lengths(stream)
    stream_histogram = m.step_length_histogram(lengths, k)
    if histogram is None:
        steps, step_tokens, histogram = len(lengths), sum(lengths), stream_histogram
    else:
        steps, step_tokens = m.histogram_steps(histogram), m.histogram_tokens(histogram)
    return dataclasses.replace(
        row,
        finish_reason=stream.finish_reason,
        steps=steps,
        step_tokens=step_tokens,
        step_histogram=histogram,
        stream_steps=len(lengths),
        stream_decode_tokens=sum(lengths),
        stream_step_histogram=stream_histogram,
        merged_chunks=m.merged_chunks(stream, k),
        ttft_s=_num(m.ttft(stream)),
        tpot_s=_num(m.tpot(stream)),
        user_tps=_num(m.user_tps(stream)),
        decode_time_s=_num(m.decode_time(stream)),
        counters=stream.spec.to_dict() if stream.spec else None,
        output_sha256=m.output_sha256(stream.output_ids),
        chunk_tokens=chunk_tokens,
        eos_at_end=eos_at_end,
        acceptance_length_specdec_bench=_num(m.specdec_bench_request_al(chunk_tokens, eos_at_end)) if k else None,
        acceptance_length_vllm=_num(m.vllm_al(spec.num_accepted_tokens, spec.num_drafts)) if spec else None,
    )


def build_record(case: CaseKey, engine: Mapping[str, Any], rounds: Sequence[MeasuredRound], *,
                 tensor_parallel_size: int = 1, policy: ClientBoundPolicy | None = None,
                 ceiling: CeilingRun | str | None = None, eos_token_ids: Collection[int] = ()) -> Record:
    """The case's record, from its measured rounds (and the engine's own run of the same prompts,
    or why there is none). The only place a record is made. ``eos_token_ids``: the target's
    end-of-sequence tokens (specdec_bench's AL leaves a final one out)."""
    k = case.k
    streams = [s for r in rounds for s in r.streams]
    counters = _counters(rounds, streams, k)
    acceptance, histograms = _acceptance(streams, k, counters, eos_token_ids)
    by_stream = {id(s): h for s, h in zip(streams, histograms)}
    requests = tuple(
        _request_row(req, k, by_stream.get(id(req.stream)) if acceptance.histogram_source != "stream" else None,
                     eos_token_ids)
        for r in rounds for req in r.requests
    )
    errors = tuple(f"{req.question_id} turn {req.turn + 1}: {req.stream.error}"
                   for r in rounds for req in r.requests if req.stream.error)
    return Record(
        case=case,
        engine=dict(engine),
        acceptance=acceptance,
        speed=_speed(rounds, streams, acceptance.steps, k, tensor_parallel_size, policy or ClientBoundPolicy(), ceiling),
        counters=counters,
        fidelity=_fidelity(streams, k, counters),
        errors=errors,
        requests=requests,
        outputs_sha256=m.outputs_sha256((r.question_id, r.turn, r.round, r.output_sha256) for r in requests),
    )


def speedup_section(record: Record, baseline: Record) -> dict[str, Any]:
    """``speedup_vs_none``: this case's TPS over the ``none`` drafter's at the same case and load."""
    return {
        "baseline_case_id": baseline.case_id,
        "output_tps": _num(m.speedup(record.speed.output_tps, baseline.speed.output_tps)),
        "user_tps": _num(m.speedup(record.speed.user_tps_median, baseline.speed.user_tps_median)),
        "proxy": _num(m.proxy_speedup(baseline.speed.step_latency_p50_s, record.acceptance.acceptance_length,
                                      record.speed.step_latency_p50_s)),
    }


def none_baseline_key(case: CaseKey) -> tuple[Any, ...]:
    """Cases that share this key are the same workload under another drafter."""
    return (case.split, case.category, case.bucket, case.tier, case.engine, case.concurrency, case.max_tokens,
            case.temperature, case.arrival)


def session_speedups(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """``speedup_vs_none`` for every SD case whose workload also ran with the ``none`` drafter."""
    plain = {none_baseline_key(r.case): r for r in records if not r.case.drafter.enabled}
    out = {}
    for record in records:
        base = plain.get(none_baseline_key(record.case))
        if base is not None and record.case.drafter.enabled:
            out[record.case_id] = {"speedup_vs_none": speedup_section(record, base)}
    return out
