"""Shared HTTP helpers for served engines: endpoint URLs, the API key and stream errors. Wire
formats (server-sent events, Prometheus text, engines' payloads) are parsed in :mod:`.wire`."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

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


@dataclass(frozen=True)
class Endpoint:
    """A server URL taken apart: requests go to ``base`` + a path, with the URL's query string on
    every request and its ``user:password@`` as HTTP Basic auth (never inside ``base``)."""

    base: str
    params: tuple[tuple[str, str], ...] = ()
    credentials: tuple[str, str] | None = None


def endpoint(url: str) -> Endpoint:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all name one server;
    ``http://user:pass@host:8000/v1?api_key=K`` names it too, with Basic auth and a query."""
    text = url.strip()
    if not re.match(r"^https?://", text):
        raise EngineError(f"--speedbench-endpoint {url!r}: expected an http:// or https:// URL")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise EngineError(f"--speedbench-endpoint {public_url(text)!r}: not a valid URL ({exc})") from None
    if not parts.hostname:
        raise EngineError(f"--speedbench-endpoint {url!r}: the URL names no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host + (f":{port}" if port else "")
    path = parts.path.rstrip("/").removesuffix("/v1").rstrip("/")
    credentials = None
    if parts.username is not None or parts.password is not None:
        credentials = (unquote(parts.username or ""), unquote(parts.password or ""))
    return Endpoint(urlunsplit((parts.scheme, netloc, path, "", "")), tuple(parse_qsl(parts.query)), credentials)


def base_url(url: str) -> str:
    """The server's base URL (see :func:`endpoint`): no credentials, no query, no ``/v1``."""
    return endpoint(url).base


def public_url(url: str) -> str:
    """The URL as a record may show it: no user, password or query string (which may hold a key)."""
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
