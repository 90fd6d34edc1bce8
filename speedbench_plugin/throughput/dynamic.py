"""vLLM's dynamic speculative decoding table (``speculative_config["num_speculative_tokens_per_batch_size"]``).

Format (vLLM 0.32, ``vllm/v1/spec_decode/dynamic/utils.py``): a list of ``(start_bs, end_bs, k)``
with inclusive, positive, non-overlapping ranges sorted by start; the first must start at 1; k >= 0.
vLLM carries the last k forward past the last range and clamps every k to
``num_speculative_tokens``, so that must be the table's largest k.

From measured best k at a few concurrencies: batch sizes between two measured concurrencies take the
k of the next measured one up (``(c_prev, c]`` → best k at ``c``), adjacent equal k are merged.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

DynamicTable = list[tuple[int, int, int]]


class DynamicTableError(ValueError):
    pass


def build_table(best_k_by_concurrency: Mapping[int, int]) -> DynamicTable:
    if not best_k_by_concurrency:
        raise DynamicTableError("no best draft length to build a dynamic table from")
    table: DynamicTable = []
    previous_end = 0
    for concurrency in sorted(best_k_by_concurrency):
        k = best_k_by_concurrency[concurrency]
        if not isinstance(concurrency, int) or concurrency < 1:
            raise DynamicTableError(f"concurrency {concurrency!r} is not a positive integer")
        if not isinstance(k, int) or k < 0:
            raise DynamicTableError(f"draft length {k!r} at concurrency {concurrency} is not a non-negative integer")
        if table and table[-1][2] == k:
            table[-1] = (table[-1][0], concurrency, k)
        else:
            table.append((previous_end + 1, concurrency, k))
        previous_end = concurrency
    validate_table(table)
    return table


def validate_table(table: Sequence[Sequence[int]]) -> None:
    """The same rules vLLM enforces, checked before an engine is started with the table."""
    if not table:
        raise DynamicTableError("the dynamic table is empty")
    previous_end = 0
    for entry in table:
        if len(entry) != 3:
            raise DynamicTableError(f"entry {entry!r} is not (start_bs, end_bs, k)")
        start, end, k = entry
        if start < 1 or end < start or k < 0:
            raise DynamicTableError(f"entry {tuple(entry)!r}: need 1 <= start <= end and k >= 0")
        if start != previous_end + 1:
            raise DynamicTableError(f"entry {tuple(entry)!r} does not continue from batch size {previous_end}")
        previous_end = end


def k_for_batch_size(table: Sequence[Sequence[int]], batch_size: int) -> int:
    """What vLLM schedules at ``batch_size`` (the last k carries forward past the table)."""
    for start, end, k in table:
        if start <= batch_size <= end:
            return k
    return table[-1][2]


def max_k(table: Sequence[Sequence[int]]) -> int:
    return max(k for _, _, k in table)
