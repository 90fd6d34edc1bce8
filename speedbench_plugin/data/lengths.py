"""Exact-length prompts: the chat template's frame plus a body cut or padded to fill the bucket.

A throughput prompt must be exactly ``bucket`` tokens of the target model *after* the chat template,
and the engines receive the ids verbatim. The frame (template text before and after the user's
message) is encoded once; the body is encoded, cut to the budget or padded by repeating a short
"answer now" instruction (SPEED-Bench's rule), and the closing instruction always survives the cut.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from speedbench_plugin.prompts import ChatTokenizer

SENTINEL = "<<<SPEEDBENCH-BODY>>>"
PAD_TEXT = "\nPlease give your answer now."


class BucketTooSmall(ValueError):
    pass


@dataclass(frozen=True)
class ChatFrame:
    """Token ids the chat template puts around a single user message."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    exact: bool  # True when template(message) == prefix + encode(message) + suffix was checked on a sample

    @property
    def overhead(self) -> int:
        return len(self.prefix) + len(self.suffix)


def chat_frame(chat: ChatTokenizer, probe: str = "Summarise the text above in two sentences.") -> ChatFrame:
    rendered = chat.render([{"role": "user", "content": SENTINEL}])
    before, found, after = rendered.partition(SENTINEL)
    if not found:
        raise ValueError(f"{chat.model_path}: the chat template does not place the user message verbatim")
    prefix, suffix = tuple(chat.encode_text(before)), tuple(chat.encode_text(after))
    joined = list(prefix) + chat.encode_text(probe) + list(suffix)
    return ChatFrame(prefix, suffix, exact=joined == chat.encode_chat([{"role": "user", "content": probe}]))


def fit_body(body: Sequence[int], tail: Sequence[int], budget: int, pad: Sequence[int]) -> list[int]:
    """``body`` cut (or padded with repeats of ``pad``) so that body + tail is exactly ``budget`` ids."""
    room = budget - len(tail)
    if room < 0 or not pad:
        raise BucketTooSmall(f"the closing instruction ({len(tail)} tokens) does not fit a budget of {budget}")
    fitted = list(body[:room])
    while len(fitted) < room:
        fitted.extend(pad[: room - len(fitted)])
    return fitted + list(tail)


def exact_prompt(frame: ChatFrame, body: Sequence[int], tail: Sequence[int], bucket: int, pad: Sequence[int]) -> list[int]:
    budget = bucket - frame.overhead
    if budget <= 0:
        raise BucketTooSmall(f"bucket {bucket} is not larger than the chat template's {frame.overhead} tokens")
    ids = list(frame.prefix) + fit_body(body, tail, budget, pad) + list(frame.suffix)
    if len(ids) != bucket:  # checked, not assumed
        raise AssertionError(f"built {len(ids)} tokens for bucket {bucket}")
    return ids
