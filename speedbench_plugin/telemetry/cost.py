"""What a case's tokens cost: the ``cost`` section of a record, from its rounds' telemetry, and
``cost_vs_none`` (the ``none`` drafter's cost per token over the case's), as ``speedup_vs_none``.

Per resource (``cpu_s``: CPU seconds of the engine's process tree; ``cpu_package_energy_j``: RAPL;
``gpu_energy_j``: NVML), summed over the measured rounds and divided by the rounds' output tokens
and accepted draft tokens (:func:`speedbench_plugin.metrics.per_token`). A resource that any round
lacks is left out, its reason in ``missing``; nothing is estimated.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from speedbench_plugin import metrics as m
from speedbench_plugin.record import MeasuredRound, Record, none_baseline_key

SECTION = "cost"
VS_NONE = "cost_vs_none"
RESOURCES = ("cpu_s", "cpu_package_energy_j", "gpu_energy_j")


def _resource(figures: dict[str, Any], name: str) -> float | None:
    """One round's amount of a resource from its telemetry figures; None when not measured."""
    if name == "cpu_s":
        return figures.get("cpu.cpu_s")
    if name == "cpu_package_energy_j":
        return figures.get("rapl.energy_j")
    gpus = [v for k, v in figures.items() if k.startswith("nvml.") and k.endswith(".energy_j")]
    return None if not gpus or any(v is None for v in gpus) else float(sum(gpus))


def _source(telemetry: dict[str, Any], name: str) -> str | None:
    key = {"cpu_s": "cpu", "cpu_package_energy_j": "rapl", "gpu_energy_j": "nvml"}[name]
    return (telemetry.get("sources") or {}).get(key)


def _summed(values: Sequence[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else float(sum(v for v in values if v is not None))


def _gpu_load(windows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per GPU and gauge: the mean of the rounds' means and the highest peak."""
    out: dict[str, dict[str, float | None]] = {}
    keys = sorted({k for w in windows for k in (w.get("figures") or {}) if k.startswith("nvml.") and k.endswith(".mean")})
    for key in keys:
        _, gpu, gauge, _ = key.split(".")
        means = [(w.get("figures") or {}).get(key) for w in windows]
        peaks = [(w.get("figures") or {}).get(key[: -len("mean")] + "peak") for w in windows]
        row = out.setdefault(gpu, {})
        row[f"{gauge}_mean"] = m.mean(means)
        row[f"{gauge}_peak"] = max((p for p in peaks if p is not None), default=None)
    return out


def cost_section(record: Record, rounds: Sequence[MeasuredRound]) -> dict[str, Any] | None:
    """The ``cost`` section; None when telemetry was off."""
    windows = [r.telemetry for r in rounds]
    if not rounds or any(w is None for w in windows):
        return None
    present = [w for w in windows if w is not None]
    output_tokens = [sum(s.output_tokens for s in r.streams) for r in rounds]
    accepted = record.acceptance.step_tokens - record.acceptance.steps if record.case.k else None
    missing: dict[str, str] = {}
    for window in present:
        missing.update(window.get("missing") or {})
    out: dict[str, Any] = {
        "output_tokens": sum(output_tokens),
        "accepted_tokens": accepted,
        "sources": {}, "missing": missing, "per_round": {},
        "sampler": {"interval_s": present[0].get("interval_s"),
                    "cpu_s": float(sum(w.get("sampler_cpu_s") or 0.0 for w in present)),
                    "share_max": max((w.get("sampler_share") or 0.0 for w in present), default=None),
                    "samples": int(sum(w.get("samples") or 0 for w in present))},
        "gpus": _gpu_load(present),
    }
    for name in RESOURCES:
        amounts = [_resource(w.get("figures") or {}, name) for w in present]
        total = _summed(amounts)
        if total is None:
            if name == "gpu_energy_j" and "nvml" not in missing and all(a is None for a in amounts):
                missing["nvml"] = "no GPU energy figure in the samples"
            continue
        out[name] = total
        out[f"{name}_per_output_token"] = m.per_token(total, sum(output_tokens))
        out[f"{name}_per_accepted_token"] = m.per_token(total, accepted) if accepted is not None else None
        out["sources"][name] = _source(present[0], name)
        out["per_round"][f"{name}_per_output_token"] = [m.per_token(a, n) for a, n in zip(amounts, output_tokens)]
    clean: dict[str, Any] = _clean(out)
    return clean


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def cost_vs_none(record: Record, baseline: Record) -> dict[str, Any] | None:
    """Per resource both cases measured: the ``none`` case's cost per output token over this case's."""
    cost, base = record.section(SECTION), baseline.section(SECTION)
    if not cost or not base:
        return None
    out: dict[str, Any] = {"baseline_case_id": baseline.case_id}
    for name in RESOURCES:
        key = f"{name}_per_output_token"
        if cost.get(key) is not None and base.get(key) is not None:
            out[key] = _clean(m.cost_speedup(cost[key], base[key]))
    return out


def session_cost_ratios(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """``cost_vs_none`` for every SD case whose workload also ran with the ``none`` drafter."""
    plain = {none_baseline_key(r.case): r for r in records if not r.case.drafter.enabled}
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        base = plain.get(none_baseline_key(record.case))
        if base is not None and record.case.drafter.enabled:
            ratios = cost_vs_none(record, base)
            if ratios:
                out[record.case_id] = {VS_NONE: ratios}
    return out
