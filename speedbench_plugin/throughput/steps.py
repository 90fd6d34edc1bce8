"""Per-step timing for the goodput fit, reconstructed from the streams the sweep already measured.

No engine exposes per-iteration timing through its streaming API, so engine steps are rebuilt from
chunk arrival times: an engine step delivers one chunk to every running request at nearly the same
moment, so chunk times of all requests of a round, sorted, fall into tight clusters separated by the
step time. What this approximates, and how it stays honest:

* cluster boundaries: a gap larger than ``gap_fraction`` × the median per-request chunk gap;
  a cluster holding a request twice is split (counted in ``split_clusters``);
* a step's time is the gap between the first arrivals of consecutive clusters (it includes the
  harness's event-loop wake-up, the same for every step);
* batched tokens per request per decode step = ``1 + drafted``, with ``drafted`` the request's mean
  drafted tokens per decode step from the engine's per-request counters (vLLM reports drafted
  tokens only for steps that drafted, which cannot be aligned with chunks one by one), or ``k``
  when the engine gives no counters;
* only *pure decode* steps are used for the fit: no request received its first token in them and
  no request was in the engine still waiting for its first token (a prefill, possibly chunked, may
  be running but is invisible in the stream), and every request between its first and last chunk
  appears (a missing one means a merged chunk).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from speedbench_plugin.engines.base import StreamResult
from speedbench_plugin.record import MeasuredRound

STEP_COLUMNS = ("t", "step_s", "requests", "batched_tokens", "context_tokens", "tokens", "pure_decode")


def _drafted_per_step(stream: StreamResult, k: int) -> float:
    decode_steps = max(0, len(stream.chunks) - 1)
    if not k:
        return 0.0
    if stream.spec is not None and decode_steps:
        return stream.spec.num_draft_tokens / decode_steps
    return float(k)


def reconstruct_steps(streams: Sequence[StreamResult], k: int, gap_fraction: float = 0.3) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Engine steps of one round of streams; see the module docstring for what is approximated."""
    good = [s for s in streams if s.error is None and s.chunks]
    events = []
    for index, stream in enumerate(good):
        emitted = 0
        for position, chunk in enumerate(stream.chunks):
            events.append((chunk.t, index, position, chunk.n_tokens, stream.prompt_tokens + emitted))
            emitted += chunk.n_tokens
    info: dict[str, Any] = {"chunks": len(events), "split_clusters": 0}
    if len(events) < 3:
        return pd.DataFrame(columns=STEP_COLUMNS), info
    events.sort()
    gaps = [b.t - a.t for s in good for a, b in zip(s.chunks, s.chunks[1:])]
    threshold = gap_fraction * float(np.median(gaps)) if gaps else 0.0
    clusters: list[list[tuple[float, int, int, int, int]]] = [[events[0]]]
    for event in events[1:]:
        current = clusters[-1]
        if event[0] - current[-1][0] > threshold or any(e[1] == event[1] for e in current):
            if event[0] - current[-1][0] <= threshold:
                info["split_clusters"] += 1
            clusters.append([event])
        else:
            current.append(event)
    drafted = [_drafted_per_step(s, k) for s in good]
    first_t = [s.chunks[0].t for s in good]
    last_t = [s.chunks[-1].t for s in good]
    rows = []
    for previous, cluster in itertools.pairwise(clusters):
        t = cluster[0][0]
        members = {e[1] for e in cluster}
        prefill_in_step = any(e[2] == 0 for e in cluster)
        waiting = any(s.t_submit < t < first_t[i] for i, s in enumerate(good) if i not in members)
        missing = any(first_t[i] < t < last_t[i] for i in range(len(good)) if i not in members)
        batched = sum(good[e[1]].prompt_tokens if e[2] == 0 else 1.0 + drafted[e[1]] for e in cluster)
        rows.append({
            "t": t,
            "step_s": t - previous[0][0],
            "requests": len(cluster),
            "batched_tokens": batched,
            "context_tokens": sum(e[4] for e in cluster),
            "tokens": sum(e[3] for e in cluster),
            "pure_decode": not (prefill_in_step or waiting or missing),
        })
    frame = pd.DataFrame(rows, columns=STEP_COLUMNS)
    info.update(steps=len(frame), pure_decode_steps=int(frame["pure_decode"].sum()), gap_threshold_s=threshold)
    return frame, info


def decode_goodput(steps: pd.DataFrame) -> float:
    """Measured tokens per second over the pure decode steps: Σ tokens / Σ step time."""
    pure = steps[steps["pure_decode"]] if len(steps) else steps
    total = float(pure["step_s"].sum()) if len(pure) else 0.0
    return float(pure["tokens"].sum()) / total if total > 0 else float("nan")


def throughput_section(rounds: Sequence[MeasuredRound], k: int) -> dict[str, Any]:
    """The ``throughput`` section of a case's record: the decode steps rebuilt per round, for the
    SmartSpec fit, and the measured goodput over the pure decode steps."""
    frames, infos = [], []
    for measured in rounds:
        frame, info = reconstruct_steps(measured.streams, k)
        frames.append(frame)
        infos.append(info)
    steps = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else \
        pd.DataFrame(columns=STEP_COLUMNS)
    pure = steps[steps["pure_decode"].astype(bool)] if len(steps) else steps
    return {
        "decode_goodput": decode_goodput(steps) if len(steps) else None,
        "steps_reconstructed": len(steps),
        "pure_decode_steps": len(pure),
        "split_clusters": sum(i.get("split_clusters", 0) for i in infos),
        "decode_steps": pure[["batched_tokens", "context_tokens", "step_s", "tokens"]].to_dict("records") if len(pure) else [],
    }
