"""Sections on each run's own cases: fingerprint, acceptance, per-position acceptance, fidelity, speed.
Every number is a record's; the only figures computed here are a heatmap row's mean and range
over categories, named as such."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from speedbench_plugin.record import Record
from speedbench_plugin.report import figures as fg
from speedbench_plugin.report.common import (
    Context,
    case_name,
    labels_in_order,
    ordered,
    short_sha,
    splits,
    sweeps_concurrency,
)
from speedbench_plugin.report.model import Run, Spread
from speedbench_plugin.report.palette import REGRESSED_TINT
from speedbench_plugin.report.tables import BAD, WARN, Block, Column, Section, Table, fmt

UNEXPLAINED = "unexplained"  # metrics.UNEXPLAINED, the fidelity verdict nothing explains


# --- fingerprint ---------------------------------------------------------------------------------


def _joined(values: Sequence[Any]) -> str:
    items = [str(v) for v in dict.fromkeys(values) if v is not None and v != ""]
    return ", ".join(items) if items else "–"


def _hardware(run: Run) -> str:
    m = run.machine
    cpu = m.get("cpu") if isinstance(m.get("cpu"), dict) else {}
    parts = [
        m.get("cpu_model") or (cpu or {}).get("brand_raw"),
        f"{m.get('cpu_count') or (cpu or {}).get('count')} CPUs" if (m.get("cpu_count") or (cpu or {}).get("count")) else None,
        ", ".join(m.get("gpus") or []) or None,
        f"driver {m['gpu_driver']}" if m.get("gpu_driver") else None,
        f"CUDA {m['cuda']}" if m.get("cuda") else None,
        m.get("platform") or " ".join(str(m[k]) for k in ("system", "release") if m.get(k)) or None,
        m.get("node") and f"node {m['node']}",
        m.get("machine"),
    ]
    return _joined([p for p in parts if p]) if any(parts) else "not in the file"


def _facts(run: Run) -> list[tuple[str, str]]:
    records = run.records
    cases = [r.case for r in records]
    describe = [r.engine for r in records]
    outcomes = [r.outcome for r in records if r.outcome]
    labels = {split: len({r.case.label for r in records if r.case.split == split}) for split in splits(records)}
    requests = [len(r.requests) for r in records]
    commit = run.commit or {}
    return [
        ("file", f"{run.path.name} ({run.kind})"),
        ("written", run.created or "–"),
        ("partial run", "YES: the run stopped before every case finished" if run.partial else "no"),
        ("speedbench", run.speedbench_version or "–"),
        ("engine", _joined(run.engines)),
        ("model", _joined([f"{c.model.rstrip('/').rsplit('/', 1)[-1]} (sha {short_sha(c.model_sha)}, {c.model_identity})"
                           for c in cases])),
        ("drafters", _joined([str(c.drafter) for c in cases])),
        ("splits", ", ".join(f"{split}: {n} {'categories' if split == 'qualitative' else 'cells'}" for split, n in labels.items())),
        ("cases", f"{len(records)}" + (f" ({', '.join(f'{outcomes.count(o)} {o}' for o in dict.fromkeys(outcomes))})"
                                       if outcomes else "")),
        ("requests per case, all rounds", f"{min(requests)}–{max(requests)}" if min(requests) != max(requests) else str(requests[0])),
        ("concurrency", _joined(sorted({c.concurrency for c in cases}))),
        ("max tokens", _joined(sorted({c.max_tokens for c in cases}))),
        ("temperature", _joined(sorted({c.temperature for c in cases}))),
        ("rounds", _joined(sorted({c.rounds for c in cases}))),
        # What the records hold, not what the engine declared: the two can differ.
        ("counter sources", _joined([c.source for r in records for c in (r.counters.per_request, r.counters.global_)
                                     if c is not None])),
        ("step histograms from", _joined([r.acceptance.histogram_source for r in records if r.case.k])),
        ("engine lacks", _joined([m for d in describe for m in d.get("missing") or []])),
        ("hardware", _hardware(run)),
        ("devices", _joined([c.devices for c in cases])),
        ("tensor parallel", _joined(sorted({r.speed.tensor_parallel_size for r in records}))),
        ("commit", f"{short_sha(commit.get('id'))} {commit.get('branch') or ''}{' (dirty)' if commit.get('dirty') else ''}"
         if commit.get("id") else "–"),
    ]


def fingerprint(ctx: Context) -> Section:
    runs = ctx.report.runs
    facts = [_facts(run) for run in runs]
    table = Table([Column("")] + [Column(run.label, "prose") for run in runs])
    for index, (name, _) in enumerate(facts[0]):
        values = [f[index][1] for f in facts]
        differs = len(runs) > 1 and name not in ("file", "written", "commit") and len(set(values)) > 1
        partial = name == "partial run" and any(v.startswith("YES") for v in values)
        table.add([name] + values, flag=BAD if partial else WARN if differs else None)
    intro = [("What was measured, read from each file: engine and version, model and how its sha was derived, "
             "drafters, the workload's options and the machine where the file names it.")]
    if len(runs) > 1:
        intro.append(f"The first file ({runs[0].label}) is the reference the other runs are compared with; "
                     "rows where the runs differ are marked.")
    return Section("fingerprint", "Run fingerprint", intro, [Block("Runs", table, headline=True)])


# --- acceptance by category ----------------------------------------------------------------------


def _row_key(record: Record, sweep: bool) -> str:
    key = record.case.drafter.id
    if sweep:
        key += f" c{record.case.concurrency}"
    if record.case.dynamic_table is not None:
        key += " dynamic"
    return key


def matrix_block(ctx: Context, records: Sequence[Record], read: Callable[[Record], float | None], *, title: str,
                 figure_title: str, label: str, kind: str = "f2", diverging: bool = False, caption: str = "",
                 summary: str = "mean", row_key: Callable[[Record, bool], str] = _row_key, headline: bool = True) -> Block:
    """Drafter x label heatmap of one record figure, with the same matrix as a table and each row's
    mean and range over its labels (computed here, named as such)."""
    sweep = sweeps_concurrency(records)
    columns = labels_in_order(records)
    rows: dict[str, dict[str, float | None]] = {}
    colours: dict[str, str] = {}
    for record in ordered(records, ctx.palette):
        key = row_key(record, sweep)
        rows.setdefault(key, {})[record.case.label] = read(record)
        colours[key] = ctx.colour(record)
    matrix = [[rows[key].get(c) for c in columns] for key in rows]
    table = Table([Column("drafter")] + [Column(c, kind) for c in columns]
                  + [Column(f"{summary} over {len(columns)}", kind, "unweighted mean of the row's cells, computed by the report"),
                     Column("range", "text", "lowest to highest cell of the row")])
    for key, values in zip(rows, matrix):
        spread = Spread.of(values)
        table.add([key] + values + [spread.mean, f"{fmt(spread.low, kind)} – {fmt(spread.high, kind)}"])
    figure = (lambda: fg.heatmap(matrix, list(rows), columns, title=figure_title, label=label, kind=kind,
                                 diverging=diverging, row_colours=[colours[k] for k in rows]))
    return Block(title, table, figure, caption, headline=headline)


def _per_case_acceptance(ctx: Context, records: Sequence[Record], run: Run) -> Block:
    sweep = sweeps_concurrency(records)
    table = Table([
        Column("case"), Column("AL", "f3", "all decode steps: decode tokens / decode steps (SPEED-Bench)"),
        Column("AL drafting steps", "f3", "1 + accepted / drafts over steps that drafted (vLLM's convention)"),
        Column("AL stream", "f3", "from the streamed chunks"),
        Column("AL stream request mean", "f3", "mean over requests of each one's stream decode AL"),
        Column("AR", "f3", "accepted / drafted tokens, engine counters"), Column("step histogram source"),
        Column("counter source"), Column("steps", "int"), Column("merged chunks", "int"),
    ])
    for r in ordered(records, ctx.palette):
        acc = r.acceptance
        merged = acc.histogram_source == "stream" and acc.stream_merged
        table.add([case_name(r, sweep), acc.acceptance_length, acc.acceptance_length_drafting_steps,
                   acc.acceptance_length_stream, acc.acceptance_length_stream_request_mean, acc.acceptance_rate,
                   acc.histogram_source, r.counters.source or f"none ({r.counters.note or 'no counters'})", acc.steps,
                   acc.merged_chunks], flag=WARN if merged else None, cells={1: WARN} if merged else None)
    notes = [("Marked rows: the step histogram came from a stream that merged engine steps; AL, pp and CAR "
             "overstate acceptance there.")] if any(f for f in table.row_flags) else []
    return Block(ctx.run_title("Acceptance per case", run), table, notes=notes)


def _conventions_block(ctx: Context, records: Sequence[Record], run: Run) -> Block:
    """Every tool's AL of each case side by side (README "AL conventions")."""
    sweep = sweeps_concurrency(records)
    table = Table([
        Column("case"),
        Column("SPEED-Bench AL", "f3", "decode tokens / decode steps, pooled; the headline"),
        Column("specdec_bench AL", "f3", "mean over requests of (tokens − final EOS) / chunks, prefill chunk counted"),
        Column("vLLM bench AL", "f3", "1 + accepted / drafts, pooled over drafting steps"),
        Column("AIPerf AL", "f3", "mean over requests of 1 + accepted / drafts"),
        Column("AIPerf AL token-weighted", "f3", "per-request 1 + accepted / drafts weighted by output tokens"),
        Column("AL delivered", "f3", "the stream's decode tokens / decode chunks: drafts cut by max_tokens not counted"),
        Column("AR pooled", "f3", "accepted / drafted tokens over all requests"),
        Column("AR request mean", "f3", "mean over requests of accepted / drafted"),
        Column("requests without drafts", "int", "left out of the per-request vLLM / AIPerf means"),
        Column("outputs sha256"),
    ])
    for r in ordered(records, ctx.palette):
        acc = r.acceptance
        table.add([case_name(r, sweep), acc.acceptance_length, acc.acceptance_length_specdec_bench,
                   acc.acceptance_length_vllm_bench, acc.acceptance_length_aiperf_request_mean,
                   acc.acceptance_length_aiperf_token_weighted, acc.acceptance_length_stream, acc.acceptance_rate,
                   acc.acceptance_rate_request_mean, acc.requests_without_drafts, short_sha(r.outputs_sha256)])
    return Block(ctx.run_title("AL by each tool's convention", run), table, notes=[
        ("The same run as SPEED-Bench, specdec_bench, vLLM's bench serve and AIPerf would each report it; "
         "equal outputs sha256 means every request produced the same tokens.")])


def acceptance(ctx: Context) -> Section:
    section = Section("acceptance", "Acceptance by category", [
        ("AL (acceptance length) counts every decode step: decode tokens / decode steps, pooled over requests "
        "(SPEED-Bench's convention). vLLM's own AL counts only the steps that drafted, 1 + accepted / drafts: it is "
        "shown as “AL drafting steps”, never instead. AR = accepted / drafted tokens, from the engine's counters "
        "(a stream cannot know what was drafted). Each case names where its step histogram came from "
        "(the engine's per-step record, or the stream)."),
    ])
    for run in ctx.report.runs:
        for split in splits(run.records):
            sd = [r for r in run.records if r.case.split == split and r.case.k]
            if not sd:
                continue
            what = "category" if split == "qualitative" else "bucket/tier"
            section.blocks.append(matrix_block(
                ctx, sd, lambda r: r.acceptance.acceptance_length, title=ctx.run_title(f"AL by {what} ({split})", run),
                figure_title=f"acceptance length, all decode steps ({split})", label="AL (tokens per step)",
                caption=f"AL per drafter and {what}; step histogram source: "
                        f"{', '.join(sorted({r.acceptance.histogram_source for r in sd}))}."))
            if any(r.acceptance.acceptance_rate is not None for r in sd):
                section.blocks.append(matrix_block(
                    ctx, sd, lambda r: r.acceptance.acceptance_rate, title=ctx.run_title(f"AR by {what} ({split})", run),
                    figure_title=f"acceptance rate, engine counters ({split})", label="AR (accepted / drafted)",
                    kind="f3", headline=False, caption=f"AR from counters: {', '.join(sorted({r.counters.source or '–' for r in sd}))}."))
        sd_all = [r for r in run.records if r.case.k]
        if sd_all:
            section.blocks.append(_per_case_acceptance(ctx, sd_all, run))
            section.blocks.append(_conventions_block(ctx, sd_all, run))
    return section


# --- per position, CAR, step lengths -------------------------------------------------------------


def _nums(values: Sequence[float | None] | None) -> list[float | None]:
    return list(values or [])


def positions(ctx: Context) -> Section:
    section = Section("positions", "Per-position acceptance and CAR decay", [
        ("pp[i]: share of decode steps whose draft i was accepted; CAR[i] = pp[i] / pp[i-1]: the chance draft i is "
        "accepted once drafts before it were (the SPEED-Bench paper's conditional acceptance). Both over all decode "
        "steps from the record's step histogram; the counters' drafting-steps versions are in the table. One line per "
        "case, coloured by drafter: lines of one colour are that drafter's categories."),
    ])
    for run in ctx.report.runs:
        sd = ordered([r for r in run.records if r.case.k and r.acceptance.per_position_acceptance_rates], ctx.palette)
        if not sd:
            continue
        sweep = sweeps_concurrency(sd)
        per_drafter = {d: sum(1 for r in sd if r.case.drafter.id == d) for d in {r.case.drafter.id for r in sd}}

        def series(read: Callable[[Record], list[float | None]], cases: list[Record] = sd,
                   counts: dict[str, int] = per_drafter) -> list[fg.Series]:
            return [fg.Series(r.case.drafter.id, [i + 1 for i in range(len(read(r)))], read(r), ctx.colour(r),
                              ctx.marker(r), alpha=0.9 if counts[r.case.drafter.id] == 1 else 0.6) for r in cases]

        panels = [
            fg.Panel("per-position acceptance pp[i]", "draft position", "share of decode steps",
                     series(lambda r: _nums(r.acceptance.per_position_acceptance_rates)), integer_x=True),
            fg.Panel("conditional acceptance CAR[i]", "draft position", "P(accepted | earlier accepted)",
                     series(lambda r: _nums(r.acceptance.conditional_acceptance_rates)), integer_x=True),
        ]
        table = Table([Column("case"), Column("source"), Column("pp", "list2"), Column("CAR", "list2"),
                       Column("pp drafting steps", "list2", "counters: accepted at position i / drafting steps"),
                       Column("CAR drafting steps", "list2")])
        for r in sd:
            acc = r.acceptance
            table.add([case_name(r, sweep), acc.histogram_source, acc.per_position_acceptance_rates,
                       acc.conditional_acceptance_rates, acc.per_position_acceptance_rates_drafting_steps,
                       acc.conditional_acceptance_rates_drafting_steps])
        merged = [case_name(r, sweep) for r in sd if r.acceptance.histogram_source == "stream" and r.acceptance.stream_merged]
        notes = [(f"From a stream that merged engine steps, without the engine's per-step record: pp and CAR overstate "
                 f"acceptance for {', '.join(merged)}.")] if merged else []
        section.blocks.append(Block(ctx.run_title("pp and CAR per draft position", run), table,
                                    lambda panels=panels: fg.line_panels(panels),  # type: ignore[misc]
                                    "One line per case; colour and marker name the drafter.", notes))
        section.blocks.append(_step_lengths(ctx, sd, run, sweep))
    return section


def _step_lengths(ctx: Context, records: Sequence[Record], run: Run, sweep: bool) -> Block:
    k_max = max(len(r.acceptance.step_histogram) for r in records) - 1
    bins = [f"{j} accepted" for j in range(k_max + 1)]
    table = Table([Column("case"), Column("source"), Column("steps", "int")]
                  + [Column(f"{j + 1} tok", "int", f"steps that emitted {j + 1} tokens ({j} drafts accepted)")
                     for j in range(k_max + 1)])
    rows = []
    for r in records:
        hist = list(r.acceptance.step_histogram)
        table.add([case_name(r, sweep), r.acceptance.histogram_source, sum(hist)]
                  + hist + [None] * (k_max + 1 - len(hist)))
        rows.append(fg.ShareRow(case_name(r, sweep), hist, ctx.colour(r)))
    return Block(ctx.run_title("Step lengths", run), table,
                 lambda: fg.stacked_shares(rows, bins, title="decode steps by accepted drafts",
                                           xlabel="share of the case's decode steps"),
                 "Each bar: the case's step histogram as shares (the table holds the counts). A step that "
                 "accepted j drafts emitted j + 1 tokens.")


# --- fidelity ------------------------------------------------------------------------------------

VERDICT_MARKERS = {"exact": "o", "within the end-cut bound": "s", "merged steps": "^", UNEXPLAINED: "X"}


def fidelity(ctx: Context) -> Section:
    section = Section("fidelity", "Fidelity: stream against engine counters", [
        ("Accepted draft tokens as the stream delivered them against the engine's own counters, per counter source "
        "(per_request: summed per-request metrics; global: cumulative deltas around each round). A gap is explained by "
        "drafts accepted in a request's last step but cut by max_tokens or a stop (exact from the engine's per-step "
        "record, else at most the end-cut bound), or by chunks that merged steps. An unexplained gap is marked."),
    ])
    for run in ctx.report.runs:
        checked = ordered([r for r in run.records if r.fidelity], ctx.palette)
        if not checked:
            continue
        sweep = sweeps_concurrency(checked)
        table = Table([
            Column("case"), Column("source"), Column("counter source"), Column("verdict"),
            Column("accepted stream", "int"), Column("accepted counters", "int"),
            Column("gap", "int", "counters − stream − exact end cut"), Column("exact end cut", "int"),
            Column("end-cut bound", "int"), Column("merged chunks", "int"), Column("AL stream", "f3"),
            Column("AL counters", "f3"), Column("rel. diff", "dpct"), Column("explanation", "prose"),
        ])
        rows = []
        for r in checked:
            for name, check in r.fidelity.items():
                bad = check.verdict == UNEXPLAINED
                table.add([case_name(r, sweep), name, check.counter_source, check.verdict, check.accepted_tokens_stream,
                           check.accepted_tokens_counters, check.gap, check.accepted_cut_at_end, check.end_cut_bound,
                           check.merged_chunks, check.acceptance_length_stream, check.acceptance_length_counters,
                           check.rel_diff, check.explanation], flag=BAD if bad else None, cells={3: BAD, 6: BAD} if bad else None)
            preferred = "per_request" if "per_request" in r.fidelity else next(iter(r.fidelity))
            check = r.fidelity[preferred]
            rows.append(fg.RowMark(f"{case_name(r, sweep)} ({preferred})", ctx.colour(r), value=check.gap,
                                   marker=VERDICT_MARKERS.get(check.verdict, "o"), band=(0, check.end_cut_bound),
                                   highlight=REGRESSED_TINT if check.verdict == UNEXPLAINED else None))
        keys = [fg.Key("end cuts can explain (bound)", "", kind="band")] + [
            fg.Key(verdict, "#555555", marker) for verdict, marker in VERDICT_MARKERS.items()]
        section.blocks.append(Block(
            ctx.run_title("Stream against counters", run), table,
            lambda rows=rows, keys=keys: fg.row_chart(rows, title="accepted drafts: counters − stream",  # type: ignore[misc]
                                                      xlabel="gap in accepted draft tokens", vlines=[0], keys=keys),
            "Marker: the gap after exact end cuts, shaped by verdict, coloured by drafter; grey band: what drafts cut at "
            "requests' ends can explain. A tinted row is an unexplained gap."))
    merged = [(run, r) for run in ctx.report.runs for r in run.records if r.acceptance.merged_chunks]
    if merged:
        table = Table([Column("run"), Column("case"), Column("merged chunks", "int"), Column("merge rate", "pct"),
                       Column("step histogram source"), Column("AL", "f3"), Column("AL stream", "f3")])
        for run, r in merged:
            overstated = r.acceptance.histogram_source == "stream"
            table.add([run.label, case_name(r, True), r.acceptance.merged_chunks, r.acceptance.merge_rate,
                       r.acceptance.histogram_source, r.acceptance.acceptance_length, r.acceptance.acceptance_length_stream],
                      flag=WARN if overstated else None)
        section.blocks.append(Block("Merged stream chunks", table, notes=[
            ("A chunk longer than k + 1 tokens carries several engine steps. Where the step histogram came from the "
            "stream (marked rows), AL, pp and CAR overstate acceptance; where it came from the engine's per-step "
            "record, only the stream's own AL does. See the documentation, docs/concepts/metrics.md, “Merged steps”.")]))
    return section


# --- speed ---------------------------------------------------------------------------------------


def _speed_blocks(ctx: Context, run: Run) -> list[Block]:
    records = ordered(run.records, ctx.palette)
    sweep = sweeps_concurrency(records)
    tps = Table([Column("case"), Column("output TPS", "f1", "median over rounds of output tokens / wall time"),
                 Column("rounds", "int"), Column("per round", "text"), Column("per GPU", "f1"), Column("TP", "int")])
    tps_rows, user_rows = [], []
    for r in records:
        s = r.speed
        tps.add([case_name(r, sweep), s.output_tps, len(s.output_tps_rounds),
                 " ".join(fmt(v, "f1") for v in s.output_tps_rounds), s.output_tps_per_gpu, s.tensor_parallel_size])
        tps_rows.append(fg.RowMark(case_name(r, sweep), ctx.colour(r), value=s.output_tps, bar=True,
                                   points=s.output_tps_rounds))
        user_rows.append(fg.RowMark(case_name(r, sweep), ctx.colour(r), value=s.user_tps_median, marker=ctx.marker(r),
                                    lo=s.user_tps_p10, hi=s.user_tps_p90))
    latency = Table([Column("case"), Column("user TPS median", "f1"), Column("p10", "f1"), Column("p90", "f1"),
                     Column("TTFT median ms", "ms"), Column("TTFT p99 ms", "ms"), Column("TPOT median ms", "ms"),
                     Column("step p50 ms", "ms"), Column("step p90 ms", "ms"), Column("step p99 ms", "ms")])
    for r in records:
        s = r.speed
        latency.add([case_name(r, sweep), s.user_tps_median, s.user_tps_p10, s.user_tps_p90, s.ttft_median_s, s.ttft_p99_s,
                     s.tpot_median_s, s.step_latency_p50_s, s.step_latency_p90_s, s.step_latency_p99_s])
    blocks = [
        Block(ctx.run_title("Output TPS", run), tps,
              lambda: fg.row_chart(tps_rows, title="output tokens per second", xlabel="tokens/s (all requests)",
                                   keys=[fg.Key("median over rounds", "#888888", kind="bar"),
                                         fg.Key("one round", "#111111")]),
              "Bar: the record's output TPS (median over rounds); dots: each round.", headline=True),
        Block(ctx.run_title("User TPS and latency", run), latency,
              lambda: fg.row_chart(user_rows, title="per-request decode speed",
                                   xlabel="user TPS (tokens/s per request)",
                                   keys=[fg.Key("median", "#555555"), fg.Key("p10 – p90", "#555555", kind="line")]),
              "Marker: median user TPS over requests; line: p10 to p90."),
    ]
    if any(r.speed.harness_efficiency is not None or r.speed.client_bound or r.speed.client_cpu_us_per_output is not None
           for r in records):
        harness = Table([Column("case"), Column("client CPU µs / output", "f1"), Column("engine ceiling TPS", "f1"),
                         Column("harness efficiency", "pct", "measured output TPS / the engine's own non-streaming TPS"),
                         Column("client-bound"), Column("why", "prose")])
        for r in records:
            s = r.speed
            harness.add([case_name(r, sweep), s.client_cpu_us_per_output, s.engine_ceiling_tps, s.harness_efficiency,
                         s.client_bound, "; ".join(s.client_bound_reasons)], flag=WARN if s.client_bound else None)
        blocks.append(Block(ctx.run_title("Harness", run), harness, notes=[
            "A client-bound case measured the client's pace, not the engine's: its speed figures are not the engine's."]
            if any(r.speed.client_bound for r in records) else []))
    return blocks


def _speedup_block(ctx: Context, run: Run) -> Block | None:
    gains = [(r, r.section("speedup_vs_none")) for r in ordered(run.records, ctx.palette) if r.section("speedup_vs_none")]
    if not gains:
        return None
    by_id = {r.case_id: r for r in run.records}
    sweep = sweeps_concurrency([r for r, _ in gains])
    table = Table([Column("case"), Column("vs none case"), Column("output TPS", "x"), Column("user TPS", "x"),
                   Column("proxy", "x", "t_none · AL / t_SD (median step latencies): SPEED-Bench's proxy"),
                   Column("rounds", "text", "SD case / none case"), Column("SD TPS per round"),
                   Column("none TPS per round")])
    rows = []
    for r, gain in gains:
        base = by_id.get(str(gain.get("baseline_case_id")))
        table.add([case_name(r, sweep), gain.get("baseline_case_id"), gain.get("output_tps"), gain.get("user_tps"),
                   gain.get("proxy"), f"{r.case.rounds} / {base.case.rounds if base else '–'}",
                   " ".join(fmt(v, "f1") for v in r.speed.output_tps_rounds),
                   " ".join(fmt(v, "f1") for v in base.speed.output_tps_rounds) if base else "–"])
        rows.append(fg.RowMark(case_name(r, sweep), ctx.colour(r), value=gain.get("output_tps"), bar=True,
                               extras=[(gain.get("user_tps"), "D"), (gain.get("proxy"), "s")]))
    keys = [fg.Key("output TPS", "#888888", kind="bar"), fg.Key("user TPS", "#555555", "D", kind="hollow"),
            fg.Key("proxy t_none·AL/t_SD", "#555555", "s", kind="hollow")]
    return Block(ctx.run_title("Speedup vs none", run), table,
                 lambda: fg.row_chart(rows, title="speedup over the none drafter, same case and load",
                                      xlabel="speedup (x)", vlines=[1.0], keys=keys),
                 "From each case's speedup_vs_none section; the rounds behind both sides are in the table.", headline=True)


def speed(ctx: Context) -> Section:
    section = Section("speed", "Speed", [
        ("Output TPS: all output tokens over the round's wall time, the median over rounds. User TPS: per request, "
        "tokens after the first over the time after the first; TTFT and TPOT per request; percentiles over requests."),
    ])
    for run in ctx.report.runs:
        section.blocks += _speed_blocks(ctx, run)
        gain = _speedup_block(ctx, run)
        if gain is not None:
            section.blocks.append(gain)
    return section
