"""The sweep's questions answered from per-case records (pure functions: records in, tables out).

Records are the lead's per-case records (``split == "throughput"``) with this package's additions
under ``record["throughput"]`` (per-GPU TPS, reconstructed decode steps). A *family* is a drafter
without its draft length (``ngram_k3`` → ``ngram``): the draft-length sweep varies k within one.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from speedbench_plugin.metrics import per_position_from_histogram
from speedbench_plugin.throughput import goodput, sssd
from speedbench_plugin.throughput.dynamic import DynamicTableError, build_table

DYNAMIC_OPTION = "dynamic"
REAL_TIERS = ("low_entropy", "mixed", "high_entropy")
RANDOM_TIER = "random"


def family_of(drafter_id: str) -> str:
    return re.sub(r"_k\d+", "", drafter_id)


def is_dynamic(record: dict[str, Any]) -> bool:
    return f"_{DYNAMIC_OPTION}" in str(record.get("drafter_id", ""))


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def cases_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per throughput case, with the speedup against ``none`` at the same cell and load,
    and the paper's proxy speedup ``t_ar · AL / t_sd`` (t = median step latency)."""
    rows = []
    for r in records:
        if r.get("split") != "throughput":
            continue
        extra = r.get("throughput") or {}
        rows.append({
            "case_id": r["case_id"], "engine": r.get("engine"), "bucket": r.get("bucket"), "tier": r.get("tier"),
            "drafter_id": r.get("drafter_id"), "family": family_of(str(r.get("drafter_id"))), "k": r.get("k"),
            "dynamic": is_dynamic(r), "concurrency": r.get("concurrency"), "num_requests": r.get("num_requests"),
            "output_tokens": r.get("output_tokens"), "output_tps": _num(r.get("output_tps")),
            "output_tps_per_gpu": _num(extra.get("output_tps_per_gpu")), "user_tps_median": _num(r.get("user_tps_median")),
            "user_tps_p10": _num(r.get("user_tps_p10")), "user_tps_p90": _num(r.get("user_tps_p90")),
            "ttft_median_s": _num(r.get("ttft_median_s")), "step_latency_p50_s": _num(r.get("step_latency_p50_s")),
            "step_latency_p99_s": _num(r.get("step_latency_p99_s")), "acceptance_length": _num(r.get("acceptance_length")),
            "decode_goodput": _num(extra.get("decode_goodput")), "pure_decode_steps": extra.get("pure_decode_steps"),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    base = frame[frame["drafter_id"] == "none"].set_index(["engine", "bucket", "tier", "concurrency"])
    keys = list(zip(frame["engine"], frame["bucket"], frame["tier"], frame["concurrency"]))

    def base_value(column: str) -> list[float]:
        return [base[column].get(key, math.nan) if key in base.index else math.nan for key in keys]

    frame["speedup_output_tps"] = frame["output_tps"] / base_value("output_tps")
    frame["speedup_user_tps"] = frame["user_tps_median"] / base_value("user_tps_median")
    frame["proxy_speedup"] = np.asarray(base_value("step_latency_p50_s")) * frame["acceptance_length"] / frame["step_latency_p50_s"]
    frame["proxy_minus_user_speedup"] = frame["proxy_speedup"] - frame["speedup_user_tps"]
    plain = frame["drafter_id"] == "none"
    frame.loc[plain, ["speedup_output_tps", "speedup_user_tps", "proxy_speedup", "proxy_minus_user_speedup"]] = math.nan
    return frame.sort_values(["bucket", "tier", "family", "k", "concurrency"]).reset_index(drop=True)


def random_vs_real(frame: pd.DataFrame) -> pd.DataFrame:
    """How much the random tier overstates output TPS against each real tier and their mean, per
    (bucket, concurrency, drafter): ``random / real − 1`` (SD off is the ``none`` drafter)."""
    if frame.empty or RANDOM_TIER not in set(frame["tier"]):
        return pd.DataFrame()
    rows = []
    for (bucket, drafter, concurrency), group in frame[~frame["dynamic"]].groupby(["bucket", "drafter_id", "concurrency"]):
        tps = dict(zip(group["tier"], group["output_tps"]))
        real = {t: v for t, v in tps.items() if t in REAL_TIERS and not math.isnan(v)}
        if RANDOM_TIER not in tps or not real:
            continue
        row = {"bucket": bucket, "drafter_id": drafter, "sd": drafter != "none", "concurrency": concurrency,
               "random_tps": tps[RANDOM_TIER], "real_mean_tps": float(np.mean(list(real.values())))}
        for tier, value in real.items():
            row[f"overstatement_vs_{tier}"] = tps[RANDOM_TIER] / value - 1.0
        row["overstatement_vs_real_mean"] = tps[RANDOM_TIER] / row["real_mean_tps"] - 1.0
        rows.append(row)
    return pd.DataFrame(rows)


# --- draft length: measured, SmartSpec, SSSD -----------------------------------------------------


@dataclass
class DraftLengthAnalysis:
    bucket: int
    tier: str
    family: str
    measured: pd.DataFrame  # concurrency, k, output_tps, decode_goodput (+ predicted_* when fitted)
    best_k_measured: dict[int, int]
    dynamic_table: list[tuple[int, int, int]] | None
    per_position: list[float] = field(default_factory=list)
    drafting_share: float = math.nan
    model: goodput.StepTimeModel | None = None
    best_k_smartspec: dict[int, int] = field(default_factory=dict)
    knee: sssd.Knee | None = None
    best_k_sssd: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def choice_rows(self) -> list[dict[str, Any]]:
        """Per concurrency: the k each policy picks and the output TPS measured at that k."""
        tps = {(int(c), int(k)): v for c, k, v in zip(self.measured["concurrency"], self.measured["k"], self.measured["output_tps"])}
        rows = []
        for c in sorted(self.best_k_measured):
            row: dict[str, Any] = {"concurrency": c, "best_k_measured": self.best_k_measured[c],
                                   "tps_best": tps.get((c, self.best_k_measured[c]), math.nan)}
            for name, table in (("smartspec", self.best_k_smartspec), ("sssd", self.best_k_sssd)):
                k = table.get(c)
                row[f"k_{name}"] = k
                row[f"tps_{name}"] = tps.get((c, k), math.nan) if k is not None else math.nan
            rows.append(row)
        return rows


def _pooled_acceptance(records: Sequence[dict[str, Any]], k: int) -> tuple[list[float], float]:
    """Unconditional per-position acceptance over all decode steps of the k-draft cases, and the
    share of steps that drafted; from the engine's per-request counters where present (ground
    truth), else from the stream's step histogram (one chunk per step assumed)."""
    steps = sum(int(r.get("steps") or 0) for r in records)
    counters = [((r.get("engine_counters") or {}).get("per_request")) for r in records]
    if steps and all(c for c in counters):
        per_pos = np.zeros(k)
        drafts = 0
        for c in counters:
            values = list(c["accepted_per_pos"])[:k]
            per_pos[: len(values)] += values
            drafts += int(c["num_drafts"])
        return [float(v) for v in per_pos / steps], drafts / steps
    histogram = np.zeros(k + 1)
    for r in records:
        h = list(r.get("step_histogram") or [])[: k + 1]
        histogram[: len(h)] += h
    return per_position_from_histogram([int(v) for v in histogram]), 1.0


def step_samples(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    rows = [s for r in records for s in ((r.get("throughput") or {}).get("decode_steps") or [])]
    return pd.DataFrame(rows, columns=["batched_tokens", "context_tokens", "step_s", "tokens"])


def draft_length_analyses(
    records: Sequence[dict[str, Any]], profile: Sequence[dict[str, Any]] | None = None
) -> list[DraftLengthAnalysis]:
    """One analysis per (bucket, tier, family) that has at least one SD case and the ``none`` cases."""
    throughput = [r for r in records if r.get("split") == "throughput" and not is_dynamic(r)]
    knee = None
    knee_note = None
    if profile:
        try:
            knee = sssd.find_knee([p["batched_tokens"] for p in profile], [p["step_s"] for p in profile])
        except ValueError as exc:
            knee_note = f"SSSD: {exc}"
    else:
        knee_note = "SSSD: no step profile in this session (it runs with the `none` drafter)"
    families = sorted({family_of(r["drafter_id"]) for r in throughput if r.get("drafter_id") != "none"})
    out = []
    for family in families:
        members = [r for r in throughput if r.get("drafter_id") == "none" or family_of(r["drafter_id"]) == family]
        model, fit_note = None, None
        samples = step_samples(members)
        try:
            model = goodput.fit_step_time(samples["batched_tokens"], samples["context_tokens"], samples["step_s"])
        except goodput.FitError as exc:
            fit_note = f"SmartSpec fit ({family}): {exc}"
        cells = sorted({(r["bucket"], r["tier"]) for r in members if r.get("drafter_id") != "none"})
        for bucket, tier in cells:
            cell = [r for r in members if (r["bucket"], r["tier"]) == (bucket, tier)]
            measured = pd.DataFrame([
                {"concurrency": int(r["concurrency"]), "k": int(r["k"]), "output_tps": _num(r.get("output_tps")),
                 "decode_goodput": _num((r.get("throughput") or {}).get("decode_goodput"))}
                for r in cell
            ]).sort_values(["concurrency", "k"]).reset_index(drop=True)
            best = goodput.best_k(measured, "output_tps")
            analysis = DraftLengthAnalysis(int(bucket), str(tier), family, measured, best, None)
            try:
                analysis.dynamic_table = build_table(best)
            except DynamicTableError as exc:
                analysis.notes.append(f"dynamic table: {exc}")
            sd = [r for r in cell if r["k"]]
            k_max = max(int(r["k"]) for r in sd)
            analysis.per_position, analysis.drafting_share = _pooled_acceptance([r for r in sd if r["k"] == k_max], k_max)
            concurrencies = sorted(set(measured["concurrency"]))
            ks = sorted(set(measured["k"]) - {0})
            if model is not None:
                analysis.model = model
                max_tokens = max(int(r.get("max_tokens") or 0) for r in cell)
                predicted = goodput.predict_goodput(model, analysis.per_position, ks, concurrencies,
                                                    context_per_request=bucket + max_tokens / 2,
                                                    drafting_share=analysis.drafting_share)
                analysis.best_k_smartspec = goodput.best_k(predicted, "goodput", goodput.NO_SPEC_TIE_BONUS)
                analysis.measured = analysis.measured.merge(
                    predicted[["concurrency", "k", "goodput", "step_s"]].rename(
                        columns={"goodput": "predicted_goodput", "step_s": "predicted_step_s"}),
                    on=["concurrency", "k"], how="left")
                analysis.measured["predicted_vs_decode"] = analysis.measured["predicted_goodput"] / analysis.measured["decode_goodput"] - 1
            elif fit_note:
                analysis.notes.append(fit_note)
            if knee is not None:
                analysis.knee = knee
                analysis.best_k_sssd = sssd.sssd_table(knee.tokens, concurrencies, k_max)
            elif knee_note:
                analysis.notes.append(knee_note)
            out.append(analysis)
    return out


def dynamic_validation(frame: pd.DataFrame) -> pd.DataFrame:
    """The dynamic-table run against the best fixed k (and no SD) at each concurrency."""
    if frame.empty or not frame["dynamic"].any():
        return pd.DataFrame()
    rows = []
    for _, dyn in frame[frame["dynamic"]].iterrows():
        fixed = frame[(~frame["dynamic"]) & (frame["bucket"] == dyn["bucket"]) & (frame["tier"] == dyn["tier"])
                      & (frame["concurrency"] == dyn["concurrency"])
                      & ((frame["family"] == family_of(dyn["drafter_id"]).replace(f"_{DYNAMIC_OPTION}1", ""))
                         | (frame["drafter_id"] == "none"))]
        if fixed.empty:
            continue
        best = fixed.loc[fixed["output_tps"].idxmax()]
        rows.append({"bucket": dyn["bucket"], "tier": dyn["tier"], "concurrency": dyn["concurrency"],
                     "dynamic_tps": dyn["output_tps"], "best_fixed": best["drafter_id"], "best_fixed_tps": best["output_tps"],
                     "dynamic_vs_best_fixed": dyn["output_tps"] / best["output_tps"] - 1.0})
    return pd.DataFrame(rows)
