"""Shared HTTP helpers for served engines: endpoint URLs, the API key and stream errors. Wire
formats (server-sent events, Prometheus text, engines' payloads) are parsed in :mod:`.wire`."""
from __future__ import annotations

import os
import re

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


def public_url(url: str) -> str:
    """The URL as a record may show it: no user, password or query string (which may hold a key)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def redact(text: str) -> str:
    """Remove the API key from any text headed for an error message or a result file."""
    key = api_key()
    return text.replace(key, "***") if key else text
