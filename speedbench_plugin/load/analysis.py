"""Rate sweeps from the final load records (pure functions: records in, tables out).

A *sweep* is one drafter's cases over request rates with everything else equal (engine, prompts,
output length, arrival shape and seed, concurrency cap, client processes). For each SD drafter
whose sweep has a ``none`` partner: mean, p90 and decode-only latency against rate SD on and off,
the crossover rate above which SD is slower (interpolated), the highest sustainable rate at the
target SLO attainment on both sides ("speedup at equal SLO attainment"), and what SmartSpec's
fitted step-time model predicts for the same (decode-only, see ``metrics.DecodeLatencyModel``).
Every case's figures are read from its ``load`` section; the sweep figures are computed here once
and stored on every case of the sweep as its ``load_sweep`` section.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from speedbench_plugin import metrics as m
from speedbench_plugin.load.section import json_safe
from speedbench_plugin.record import Record
from speedbench_plugin.throughput.analysis import family_of

GROUP_COLUMNS = ["engine", "cell", "max_tokens", "temperature", "burstiness", "ramp_up_s", "duration_s", "seed", "cap",
                 "clients"]


def _num(value: Any) -> float:
    """A figure read back from a section: numbers, and "inf" (see ``section.json_safe``)."""
    if isinstance(value, str) and value in ("inf", "-inf"):
        return float(value)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def load_records(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.section("load")]


def rate_of(record: Record) -> float:
    return float(record.section("load")["schedule"]["pattern"]["rate"])


def cases_frame(records: Iterable[Record]) -> pd.DataFrame:
    rows = []
    for r in load_records(records):
        load = r.section("load")
        pattern = load["schedule"]["pattern"]
        slo = load.get("slo") or {}
        gain = r.section("speedup_vs_none") or {}
        rows.append({
            "case_id": r.case_id, "engine": r.case.engine, "cell": r.case.cell, "bucket": r.case.bucket,
            "tier": r.case.tier, "category": r.case.category, "drafter_id": r.case.drafter.id,
            "family": family_of(r.case.drafter), "k": r.case.k, "rate": rate_of(r), "arrival": r.case.arrival,
            "burstiness": pattern.get("burstiness"), "ramp_up_s": pattern.get("ramp_up_s"),
            "duration_s": pattern.get("duration_s"), "seed": pattern.get("seed"),
            "cap": load["schedule"].get("concurrency_cap"), "clients": load["clients"]["processes"],
            "max_tokens": r.case.max_tokens, "temperature": r.case.temperature,
            "requests": load["requests"], "failed": load["failed"],
            "scheduled_rps": _num(load.get("scheduled_rate_per_s")), "achieved_rps": _num(load["achieved_rate_per_s"]),
            "latency_mean_s": _num(load["latency_s"]["mean"]), "latency_p90_s": _num(load["latency_s"]["p90"]),
            "decode_time_mean_s": _num(load["decode_time_mean_s"]), "ttft_median_s": _num(r.speed.ttft_median_s),
            "tpot_median_s": _num(r.speed.tpot_median_s), "output_tps": _num(r.speed.output_tps),
            "acceptance_length": _num(r.acceptance.acceptance_length),
            "speedup_output_tps": _num(gain.get("output_tps")),
            "slo_attainment": _num(slo.get("attainment")), "goodput_rps": _num(slo.get("goodput_rps")),
            "goodput_tps": _num(slo.get("goodput_tps")),
            "saturated": load["saturation"]["saturated"], "ttft_growth": _num(load["saturation"]["ttft_growth"]),
            "client_bound": bool(load["client_bound"]["flag"]),
            "client_bound_reasons": "; ".join(load["client_bound"]["reasons"]),
            "send_error_p99_ms": _num(load["send_error_s"]["p99"]) * 1e3,
            "loop_lag_p99_ms": _num(load["loop_lag_s"]["p99"]) * 1e3,
            "loop_cpu_share": _num(load["client_cpu"]["loop_share_max"]),
            "outcome": r.outcome,
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["cell", "drafter_id", "rate"]).reset_index(drop=True)


def _group_key(row: Any) -> tuple[Any, ...]:
    return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in (row[c] for c in GROUP_COLUMNS))


def group_label(key: Sequence[Any]) -> str:
    values = dict(zip(GROUP_COLUMNS, key))
    parts = [str(values["engine"]), str(values["cell"]), f"{values['max_tokens']} tok"]
    if values["burstiness"] not in (None, 1, 1.0):
        parts.append(f"burstiness {values['burstiness']:g}")
    if values["ramp_up_s"]:
        parts.append(f"ramp {values['ramp_up_s']:g}s")
    if values["duration_s"]:
        parts.append(f"{values['duration_s']:g}s")
    if values["cap"]:
        parts.append(f"cap {values['cap']}")
    if values["clients"] and values["clients"] > 1:
        parts.append(f"{values['clients']} clients")
    parts.append(f"seed {values['seed']}")
    return " ".join(parts)


# --- SmartSpec's model against the sweep -----------------------------------------------------


def _step_samples(records: Iterable[Record]) -> tuple[pd.DataFrame, int, int]:
    """Pure decode steps from the load cases' sections and any throughput cases' (same cell)."""
    load_rows = [s for r in records if r.section("load") for s in r.section("load")["steps"]["decode_steps"]]
    tp_rows = [s for r in records if r.section("throughput") for s in r.section("throughput").get("decode_steps") or []]
    frame = pd.DataFrame(load_rows + tp_rows, columns=["batched_tokens", "context_tokens", "step_s", "tokens"])
    return frame, len(load_rows), len(tp_rows)


def smartspec_prediction(plain: Sequence[Record], sd: Sequence[Record], throughput: Sequence[Record],
                         rates: Sequence[float]) -> dict[str, Any]:
    """SmartSpec's fitted step time (``throughput.goodput``) as decode latency against rate, SD on
    and off, and the crossover it predicts; a note instead where the data do not allow a fit."""
    from speedbench_plugin.throughput import goodput

    samples, from_load, from_tp = _step_samples([*plain, *sd, *throughput])
    try:
        fit = goodput.fit_step_time(samples["batched_tokens"], samples["context_tokens"], samples["step_s"])
    except goodput.FitError as exc:
        return {"note": f"no SmartSpec prediction: {exc} (pure decode steps rebuilt from these cases' streams)"}
    steps = sum(r.acceptance.steps for r in sd)
    al = m.acceptance_length(sum(r.acceptance.step_tokens for r in sd), steps)
    counters = [r.counters.per_request for r in sd]
    k = max(r.case.k for r in sd)
    if steps and all(c is not None for c in counters):
        drafted = m.ratio(sum(c.num_draft_tokens for c in counters if c is not None), steps)
        drafted_source = "engine per-request counters"
    else:
        drafted, drafted_source = float(k), "k (no per-request counters)"
    reference = plain[0] if plain else sd[0]
    tokens = reference.case.max_tokens
    prompt = m.mean(row.prompt_tokens for r in [*plain, *sd] for row in r.requests if row.error is None)
    context = prompt + tokens / 2
    coefficients = (fit.per_batched_token, fit.per_context_token, fit.fixed)
    off = m.DecodeLatencyModel.of(*coefficients, 1.0, 0.0, tokens, context)
    on = m.DecodeLatencyModel.of(*coefficients, al, drafted, tokens, context)
    finite = [r for r in rates if not math.isinf(r)]
    return {
        "fit": fit.to_dict(), "fit_source": f"{from_load} pure decode steps from the load cases"
                                            + (f" + {from_tp} from throughput cases" if from_tp else ""),
        "acceptance_length": al, "drafted_per_step": drafted, "drafted_source": drafted_source,
        "output_tokens": tokens, "context_per_request": context,
        "rates": finite, "none_decode_s": [off.latency(r) for r in finite], "sd_decode_s": [on.latency(r) for r in finite],
        "crossover_rate": m.predicted_crossover(on, off),
        "saturation_rate_none": off.saturation_rate, "saturation_rate_sd": on.saturation_rate,
        "note": "decode only: prefill and queueing for it are not in the model (its fit uses pure decode steps)",
    }


# --- the sweeps --------------------------------------------------------------------------------


def _crossing(rates: Sequence[float], diffs: Sequence[float]) -> dict[str, Any]:
    value, kind = m.crossing(rates, diffs)
    return {"rate": value, "kind": kind}


def _sustainable(series: pd.DataFrame, target: float) -> dict[str, Any] | None:
    if series["slo_attainment"].isna().all():
        return None
    value, kind = m.highest_rate_meeting(list(series["rate"]), list(series["slo_attainment"]), target)
    return {"rate": value, "kind": kind, "target_attainment": target}


def _vs_none(sd: pd.DataFrame, plain: pd.DataFrame, sd_records: list[Record], plain_records: list[Record],
             throughput: list[Record], sustainable_sd: dict[str, Any] | None,
             sustainable_none: dict[str, Any] | None) -> dict[str, Any]:
    both = sd.merge(plain, on="rate", suffixes=("_sd", "_none"))
    both = both[~both["rate"].map(math.isinf)].sort_values("rate")
    rates = [float(r) for r in both["rate"]]
    diff = {name: [float(a - b) for a, b in zip(both[f"{name}_sd"], both[f"{name}_none"])]
            for name in ("latency_mean_s", "latency_p90_s", "decode_time_mean_s")}
    out: dict[str, Any] = {
        "baseline_drafter": "none", "rates": rates,
        "latency_mean_diff_s": diff["latency_mean_s"], "latency_p90_diff_s": diff["latency_p90_s"],
        "decode_time_diff_s": diff["decode_time_mean_s"],
        "crossover_mean": _crossing(rates, diff["latency_mean_s"]),
        "crossover_p90": _crossing(rates, diff["latency_p90_s"]),
        "crossover_decode": _crossing(rates, diff["decode_time_mean_s"]),
        "sustainable_rate_none": sustainable_none,
        "speedup_at_equal_attainment": None,
    }
    if sustainable_sd and sustainable_none:
        value, kind = m.bounded_ratio((sustainable_sd["rate"], sustainable_sd["kind"]),
                                      (sustainable_none["rate"], sustainable_none["kind"]))
        out["speedup_at_equal_attainment"] = {"value": value, "kind": kind}
    out["smartspec"] = smartspec_prediction(plain_records, sd_records, throughput, rates)
    return out


def sweeps(records: Sequence[Record], target: float) -> dict[tuple[tuple[Any, ...], str], dict[str, Any]]:
    """``{(group key, drafter id): the sweep's figures}``."""
    frame = cases_frame(records)
    if frame.empty:
        return {}
    by_id = {r.case_id: r for r in records}
    throughput = [r for r in records if r.case.split == "throughput"]
    frame["_key"] = [_group_key(row) for _, row in frame.iterrows()]
    out: dict[tuple[tuple[Any, ...], str], dict[str, Any]] = {}
    for key, group in frame.groupby("_key", sort=False):
        series = {d: g.sort_values("rate") for d, g in group.groupby("drafter_id")}
        sustainable = {d: _sustainable(s, target) for d, s in series.items()}
        for drafter, s in series.items():
            result: dict[str, Any] = {"group": group_label(key), "drafter": drafter,
                                      "rates": [float(r) for r in s["rate"]],
                                      "sustainable_rate": sustainable[drafter], "vs_none": None}
            if drafter != "none" and "none" in series:
                cell = [r for r in throughput if r.case.cell == s.iloc[0]["cell"]
                        and (not r.case.drafter.enabled or family_of(r.case.drafter) == s.iloc[0]["family"])]
                result["vs_none"] = _vs_none(s, series["none"], [by_id[c] for c in s["case_id"]],
                                             [by_id[c] for c in series["none"]["case_id"]], cell, sustainable[drafter],
                                             sustainable["none"])
            out[(key, drafter)] = result
    return out


def session_sections(records: Sequence[Record], target: float) -> dict[str, dict[str, Any]]:
    """``load_sweep`` for every load case: its sweep's figures (the same dict on each of its cases)."""
    frame = cases_frame(records)
    if frame.empty:
        return {}
    results = sweeps(records, target)
    out = {}
    for _, row in frame.iterrows():
        result = results.get((_group_key(row), row["drafter_id"]))
        if result is not None:
            out[row["case_id"]] = {"load_sweep": json_safe(result)}
    return out


def latency_rows(records: Sequence[Record]) -> pd.DataFrame:
    """Latency against rate per SD sweep with its ``none`` partner, measured and predicted, from the
    records' ``load`` and ``load_sweep`` sections."""
    frame = cases_frame(records)
    if frame.empty:
        return pd.DataFrame()
    sections = {r.case_id: r.section("load_sweep") for r in records if r.section("load_sweep")}
    frame["_key"] = [_group_key(row) for _, row in frame.iterrows()]
    rows = []
    for key, group in frame.groupby("_key", sort=False):
        plain = group[group["drafter_id"] == "none"].set_index("rate")
        for drafter, sd in group[group["drafter_id"] != "none"].groupby("drafter_id"):
            sweep = sections.get(sd.iloc[0]["case_id"]) or {}
            smart = (sweep.get("vs_none") or {}).get("smartspec") or {}
            predicted = {_num(rate): (_num(a), _num(b)) for rate, a, b in zip(
                smart.get("rates", []), smart.get("none_decode_s", []), smart.get("sd_decode_s", []))}
            for _, row in sd.sort_values("rate").iterrows():
                base = plain.loc[row["rate"]] if row["rate"] in plain.index else None
                guess = predicted.get(row["rate"], (math.nan, math.nan))
                rows.append({
                    "group": group_label(key), "drafter_id": drafter, "rate": row["rate"],
                    "none_mean_s": _num(base["latency_mean_s"]) if base is not None else math.nan,
                    "none_p90_s": _num(base["latency_p90_s"]) if base is not None else math.nan,
                    "sd_mean_s": row["latency_mean_s"], "sd_p90_s": row["latency_p90_s"],
                    "none_decode_s": _num(base["decode_time_mean_s"]) if base is not None else math.nan,
                    "sd_decode_s": row["decode_time_mean_s"],
                    "predicted_none_decode_s": guess[0], "predicted_sd_decode_s": guess[1],
                    "none_attainment": _num(base["slo_attainment"]) if base is not None else math.nan,
                    "sd_attainment": row["slo_attainment"],
                    "client_bound": bool(row["client_bound"] or (base is not None and base["client_bound"])),
                    "saturated_none": base is not None and base["saturated"] is True,
                    "saturated_sd": row["saturated"] is True,
                })
    return pd.DataFrame(rows)


def sweep_rows(records: Sequence[Record]) -> pd.DataFrame:
    """One row per sweep (group, drafter): crossover, sustainable rates, SmartSpec's prediction."""
    seen, rows = set(), []
    for r in load_records(records):
        sweep = r.section("load_sweep")
        if not sweep or (sweep["group"], sweep["drafter"]) in seen:
            continue
        seen.add((sweep["group"], sweep["drafter"]))
        vs = sweep.get("vs_none") or {}
        smart = vs.get("smartspec") or {}
        sus = sweep.get("sustainable_rate") or {}
        sus_none = vs.get("sustainable_rate_none") or {}
        speed = vs.get("speedup_at_equal_attainment") or {}
        rows.append({
            "group": sweep["group"], "drafter_id": sweep["drafter"],
            "sustainable_rate": _num(sus.get("rate")), "sustainable_kind": sus.get("kind"),
            "sustainable_rate_none": _num(sus_none.get("rate")), "sustainable_kind_none": sus_none.get("kind"),
            "target_attainment": sus.get("target_attainment"),
            "speedup_at_equal_attainment": _num(speed.get("value")), "speedup_kind": speed.get("kind"),
            **{f"crossover_{name}": _num((vs.get(f"crossover_{name}") or {}).get("rate")) for name in ("mean", "p90", "decode")},
            **{f"crossover_{name}_kind": (vs.get(f"crossover_{name}") or {}).get("kind")
               for name in ("mean", "p90", "decode")},
            "predicted_crossover": _num(smart.get("crossover_rate")),
            "predicted_saturation_none": _num(smart.get("saturation_rate_none")),
            "predicted_saturation_sd": _num(smart.get("saturation_rate_sd")),
            "smartspec_r2": (smart.get("fit") or {}).get("r2"), "smartspec_note": smart.get("note"),
            "smartspec_fit_source": smart.get("fit_source"),
        })
    return pd.DataFrame(rows)
