"""The sweep's questions answered from per-case records (pure functions: records in, tables out).

Records are the final per-case records (``split == "throughput"``): every figure is read from them
(speedups and the proxy speedup from the ``speedup_vs_none`` section, reconstructed decode steps
from the ``throughput`` section), never re-derived. A *family* is a drafter without its draft
length (``ngram_k3`` → ``ngram``): the draft-length sweep varies k within one.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from speedbench_plugin.drafters import DrafterSpec
from speedbench_plugin.metrics import per_position_from_histogram
from speedbench_plugin.record import Record
from speedbench_plugin.throughput import goodput, sssd
from speedbench_plugin.throughput.dynamic import DynamicTableError, build_table

REAL_TIERS = ("low_entropy", "mixed", "high_entropy")
RANDOM_TIER = "random"


def family_of(drafter: DrafterSpec) -> str:
    """The drafter without its draft length: ``ngram:k=3,min=2`` -> ``ngram_min2``."""
    if not drafter.enabled:
        return "none"
    return "_".join([drafter.method] + [f"{key}{value}" for key, value in drafter.options]
                    + (["custom"] if drafter.model else []))


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def throughput_records(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.case.split == "throughput"]


def cases_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per throughput case, with its speedup against ``none`` at the same cell and load and
    the paper's proxy speedup, both from the record's ``speedup_vs_none`` section."""
    rows = []
    for r in throughput_records(records):
        extra = r.section("throughput") or {}
        gain = r.section("speedup_vs_none") or {}
        rows.append({
            "case_id": r.case_id, "engine": r.case.engine, "bucket": r.case.bucket, "tier": r.case.tier,
            "drafter_id": r.case.drafter.id, "drafter": str(r.case.drafter), "family": family_of(r.case.drafter),
            "k": r.case.k, "dynamic": r.case.dynamic_table is not None, "concurrency": r.case.concurrency,
            "num_requests": len(r.requests), "output_tokens": r.acceptance.output_tokens,
            "output_tps": _num(r.speed.output_tps), "output_tps_per_gpu": _num(r.speed.output_tps_per_gpu),
            "user_tps_median": _num(r.speed.user_tps_median), "user_tps_p10": _num(r.speed.user_tps_p10),
            "user_tps_p90": _num(r.speed.user_tps_p90), "ttft_median_s": _num(r.speed.ttft_median_s),
            "step_latency_p50_s": _num(r.speed.step_latency_p50_s), "step_latency_p99_s": _num(r.speed.step_latency_p99_s),
            "acceptance_length": _num(r.acceptance.acceptance_length), "harness_efficiency": _num(r.speed.harness_efficiency),
            "client_bound": r.speed.client_bound,
            "decode_goodput": _num(extra.get("decode_goodput")), "pure_decode_steps": extra.get("pure_decode_steps"),
            "speedup_output_tps": _num(gain.get("output_tps")), "speedup_user_tps": _num(gain.get("user_tps")),
            "proxy_speedup": _num(gain.get("proxy")),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["proxy_minus_user_speedup"] = frame["proxy_speedup"] - frame["speedup_user_tps"]
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
    drafter: DrafterSpec | None = None  # one member of the family (any k)

    def to_json(self) -> dict[str, Any]:
        """For the record's ``draft_length`` section; :meth:`from_json` reads it back."""
        return {
            "bucket": self.bucket, "tier": self.tier, "family": self.family,
            "measured": self.measured.to_dict("records"),
            "best_k_measured": {str(c): k for c, k in self.best_k_measured.items()},
            "dynamic_table": [list(e) for e in self.dynamic_table] if self.dynamic_table else None,
            "per_position": list(self.per_position), "drafting_share": self.drafting_share,
            "step_model": self.model.to_dict() if self.model else None,
            "best_k_smartspec": {str(c): k for c, k in self.best_k_smartspec.items()},
            "knee": self.knee.to_dict() if self.knee else None,
            "best_k_sssd": {str(c): k for c, k in self.best_k_sssd.items()},
            "notes": list(self.notes), "drafter": str(self.drafter) if self.drafter else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DraftLengthAnalysis:
        def ints(mapping: dict[str, Any]) -> dict[int, int]:
            return {int(c): int(k) for c, k in (mapping or {}).items()}

        fit, knee = data.get("step_model"), data.get("knee")
        return cls(
            bucket=int(data["bucket"]), tier=str(data["tier"]), family=str(data["family"]),
            measured=pd.DataFrame(data["measured"]), best_k_measured=ints(data["best_k_measured"]),
            dynamic_table=[tuple(e) for e in data["dynamic_table"]] if data.get("dynamic_table") else None,  # type: ignore[misc]
            per_position=list(data.get("per_position") or []), drafting_share=float(data.get("drafting_share") or math.nan),
            model=goodput.StepTimeModel(fit["a_s_per_batched_token"], fit["b_s_per_context_token"], fit["c_s_fixed"],
                                        fit["r2"], int(fit["samples"])) if fit else None,
            best_k_smartspec=ints(data.get("best_k_smartspec") or {}),
            knee=sssd.Knee(knee["knee_tokens"], knee["flat_s"], knee["slope_s_per_token"], knee["r2"]) if knee else None,
            best_k_sssd=ints(data.get("best_k_sssd") or {}), notes=list(data.get("notes") or []),
            drafter=DrafterSpec.parse(data["drafter"]) if data.get("drafter") else None,
        )

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


def _pooled_acceptance(records: Sequence[Record], k: int) -> tuple[list[float], float]:
    """Unconditional per-position acceptance over all decode steps of the k-draft cases, and the
    share of steps that drafted; from the engine's per-request counters where present (ground
    truth), else from the record's step histogram (named by its ``histogram_source``)."""
    steps = sum(r.acceptance.steps for r in records)
    counters = [r.counters.per_request for r in records]
    if steps and all(c is not None for c in counters):
        per_pos = np.zeros(k)
        drafts = 0
        for c in counters:
            assert c is not None
            values = list(c.accepted_per_pos)[:k]
            per_pos[: len(values)] += values
            drafts += int(c.num_drafts)
        return [float(v) for v in per_pos / steps], drafts / steps
    histogram = np.zeros(k + 1)
    for r in records:
        h = list(r.acceptance.step_histogram)[: k + 1]
        histogram[: len(h)] += h
    return per_position_from_histogram([int(v) for v in histogram]), 1.0


def step_samples(records: Iterable[Record]) -> pd.DataFrame:
    rows = [s for r in records for s in ((r.section("throughput") or {}).get("decode_steps") or [])]
    return pd.DataFrame(rows, columns=["batched_tokens", "context_tokens", "step_s", "tokens"])


def draft_length_analyses(
    records: Sequence[Record], profile: Sequence[dict[str, Any]] | None = None
) -> list[DraftLengthAnalysis]:
    """One analysis per (bucket, tier, family) that has at least one SD case and the ``none`` cases."""
    throughput = [r for r in throughput_records(records) if r.case.dynamic_table is None]
    knee = None
    knee_note = None
    if profile:
        try:
            knee = sssd.find_knee([p["batched_tokens"] for p in profile], [p["step_s"] for p in profile])
        except ValueError as exc:
            knee_note = f"SSSD: {exc}"
    else:
        knee_note = "SSSD: no step profile in this session (it runs with the `none` drafter)"
    families = sorted({family_of(r.case.drafter) for r in throughput if r.case.drafter.enabled})
    out = []
    for family in families:
        members = [r for r in throughput if not r.case.drafter.enabled or family_of(r.case.drafter) == family]
        model, fit_note = None, None
        samples = step_samples(members)
        try:
            model = goodput.fit_step_time(samples["batched_tokens"], samples["context_tokens"], samples["step_s"])
        except goodput.FitError as exc:
            fit_note = f"SmartSpec fit ({family}): {exc}"
        cells = sorted({(r.case.bucket or 0, r.case.tier or "") for r in members if r.case.drafter.enabled})
        for bucket, tier in cells:
            cell = [r for r in members if (r.case.bucket, r.case.tier) == (bucket, tier)]
            measured = pd.DataFrame([
                {"concurrency": r.case.concurrency, "k": r.case.k, "output_tps": _num(r.speed.output_tps),
                 "decode_goodput": _num((r.section("throughput") or {}).get("decode_goodput"))}
                for r in cell
            ]).sort_values(["concurrency", "k"]).reset_index(drop=True)
            best = goodput.best_k(measured, "output_tps")
            analysis = DraftLengthAnalysis(int(bucket), str(tier), family, measured, best, None,
                                           drafter=next(r.case.drafter for r in cell if r.case.drafter.enabled))
            try:
                analysis.dynamic_table = build_table(best)
            except DynamicTableError as exc:
                analysis.notes.append(f"dynamic table: {exc}")
            sd = [r for r in cell if r.case.k]
            k_max = max(r.case.k for r in sd)
            analysis.per_position, analysis.drafting_share = _pooled_acceptance([r for r in sd if r.case.k == k_max], k_max)
            concurrencies = sorted(set(measured["concurrency"]))
            ks = sorted(set(measured["k"]) - {0})
            if model is not None:
                analysis.model = model
                max_tokens = max(r.case.max_tokens for r in cell)
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
                      & ((frame["family"] == dyn["family"]) | (frame["drafter_id"] == "none"))]
        if fixed.empty:
            continue
        best = fixed.loc[fixed["output_tps"].idxmax()]
        rows.append({"bucket": dyn["bucket"], "tier": dyn["tier"], "concurrency": dyn["concurrency"],
                     "dynamic_tps": dyn["output_tps"], "best_fixed": best["drafter_id"], "best_fixed_tps": best["output_tps"],
                     "dynamic_vs_best_fixed": dyn["output_tps"] / best["output_tps"] - 1.0})
    return pd.DataFrame(rows)


# --- the analyses as record sections ---------------------------------------------------------------


def session_sections(records: Sequence[Record], profile: Sequence[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Each SD case gets the draft-length analysis of its (bucket, tier, family) as ``draft_length``;
    each random-tier case its overstatement against the real tiers as ``random_vs_real``. Computed
    once here; every table, file and report reads these sections."""
    out: dict[str, dict[str, Any]] = {}
    cases = throughput_records(records)
    for item in draft_length_analyses(records, profile):
        section = item.to_json()
        for r in cases:
            if (r.case.drafter.enabled and r.case.dynamic_table is None and family_of(r.case.drafter) == item.family
                    and (r.case.bucket, r.case.tier) == (item.bucket, item.tier)):
                out.setdefault(r.case_id, {})["draft_length"] = section
    frame = cases_frame(records)
    for row in random_vs_real(frame).to_dict("records"):
        for r in cases:
            if (r.case.tier == RANDOM_TIER and r.case.dynamic_table is None and r.case.bucket == row["bucket"]
                    and r.case.drafter.id == row["drafter_id"] and r.case.concurrency == row["concurrency"]):
                out.setdefault(r.case_id, {})["random_vs_real"] = row
    return out


def analyses_of(records: Iterable[Record]) -> list[DraftLengthAnalysis]:
    """The distinct draft-length analyses the records carry."""
    seen: dict[tuple[int, str, str], DraftLengthAnalysis] = {}
    for r in records:
        section = r.section("draft_length")
        if section and (section["bucket"], section["tier"], section["family"]) not in seen:
            seen[(section["bucket"], section["tier"], section["family"])] = DraftLengthAnalysis.from_json(section)
    return [seen[key] for key in sorted(seen)]


def random_vs_real_of(records: Iterable[Record]) -> pd.DataFrame:
    return pd.DataFrame([r.section("random_vs_real") for r in records if r.section("random_vs_real")])
