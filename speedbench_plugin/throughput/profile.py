"""A dedicated profiling pass for the SSSD knee: how long one forward pass takes as the number of
batched tokens grows, measured as the time to first token of a single fresh request whose prompt
has exactly that many tokens (a prefill step; ``max_tokens=1``).

Why prefill and not decode batches: the knee is about how many tokens one forward pass can take
before it turns compute-bound; a single prompt of T tokens varies only that, while a decode batch
of T requests also adds per-request scheduling and attention overhead. The TTFT includes the
engine's per-request overhead (constant over T), which the flat part of the hinge absorbs.
Prompts are seeded random token ids, different for every repeat, so the prefix cache never hits.
"""
from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

from speedbench_plugin.engines.base import Sampling
from speedbench_plugin.metrics import ttft
from speedbench_plugin.runner import EngineHost, WorkItem, run_round

DEFAULT_SIZES = (1, 8, 16, 32, 64, 128, 192, 256, 384, 512, 768, 1024)


def profile_prefill(host: EngineHost, sizes: Sequence[int], repeats: int, vocab: int, seed: int = 0) -> list[dict[str, Any]]:
    """Median TTFT per prompt size; one request at a time."""
    rng = random.Random(seed)
    engine = host.engine
    # One warm-up request: the first pass pays one-off allocations.
    host.run(run_round(engine, None, [WorkItem("profile-warmup", "profile", prompt_ids=(1, 2, 3))], Sampling(1), 1))
    rows = []
    for size in sizes:
        times = []
        for repeat in range(repeats):
            ids = tuple(rng.randrange(100, vocab) for _ in range(size))
            result = host.run(
                run_round(engine, None, [WorkItem(f"profile-{size}-{repeat}", "profile", prompt_ids=ids)], Sampling(1), 1)
            )
            streams = result.streams
            if streams:
                times.append(ttft(streams[0]))
        if times:
            rows.append({"batched_tokens": size, "step_s": statistics.median(times), "repeats": len(times)})
    return rows
