"""Shared HTTP helpers for served engines: endpoint URLs, the API key, server-sent events and
Prometheus text. Engine-specific field names stay in the engine modules."""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from speedbench_plugin.engines.base import EngineError, StreamResult

# Looked up in this order; the key itself is never logged, stored or put into results.
API_KEY_VARS = ("SPEEDBENCH_API_KEY", "OPENAI_API_KEY")


class StreamError(EngineError):
    """A request failed after it was accepted; ``result`` holds what had streamed until then."""

    def __init__(self, message: str, result: StreamResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def api_key() -> str | None:
    for var in API_KEY_VARS:
        value = os.environ.get(var)
        if value:
            return value
    return None


def auth_headers() -> dict[str, str]:
    key = api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def base_url(endpoint: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all name one server."""
    url = endpoint.strip().rstrip("/")
    if not re.match(r"^https?://", url):
        raise EngineError(f"--speedbench-endpoint {endpoint!r}: expected an http:// or https:// URL")
    url = url.removesuffix("/v1")
    return url


def redact(text: str) -> str:
    """Remove the API key from any text headed for an error message or a result file."""
    key = api_key()
    return text.replace(key, "***") if key else text


@dataclass
class SSEEvent:
    t: float  # perf_counter() when the event's data line reached Python
    data: str


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Yield the ``data:`` payloads of a server-sent-event stream, timestamped on arrival.

    vLLM and SGLang put one JSON object on each ``data:`` line and finish with ``data: [DONE]``.
    Each data line is yielded as soon as it is read, not when the blank separator line follows,
    so the timestamp is the moment the chunk reached Python. (Multi-line data fields, which the
    SSE spec allows and neither server uses, would arrive as separate events and fail JSON parsing
    loudly rather than silently.)
    """
    async for raw in lines:
        t = time.perf_counter()
        line = raw.rstrip("\r")
        if not line or line.startswith(":"):
            continue  # event separator or keep-alive comment
        field, _, value = line.partition(":")
        if field == "data":
            yield SSEEvent(t, value.removeprefix(" "))


def parse_json_event(event: SSEEvent, url: str) -> dict[str, Any] | None:
    """The event's JSON object; None for ``[DONE]``; a clear error for anything else."""
    if event.data.strip() == "[DONE]":
        return None
    try:
        obj = json.loads(event.data)
    except json.JSONDecodeError:
        raise EngineError(f"{url}: stream sent a non-JSON event: {event.data[:200]!r}") from None
    if not isinstance(obj, dict):
        raise EngineError(f"{url}: stream sent {type(obj).__name__}, expected a JSON object")
    return obj


def error_message(obj: dict[str, Any]) -> str | None:
    """The server's error text when a streamed object is an error (vLLM: ``{"error": {...}}``)."""
    err = obj.get("error")
    if err is None:
        return None
    if isinstance(err, dict):
        parts = [str(err.get("message") or err)]
        if err.get("code") is not None:
            parts.append(f"code {err['code']}")
        return ", ".join(parts)
    return str(err)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value); comments skipped."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        samples.append((name, dict(_LABEL.findall(labels or "")), number))
    return samples
