"""Secrets never reach an output: API keys (``SPEEDBENCH_API_KEY``, ``OPENAI_API_KEY``) and
credentials in endpoint URLs (``http://user:pass@host``, ``?api_key=...``) are masked in records,
journals, results files, JUnit XML, failure messages, captured output and tracebacks.

Engines are asked not to put secrets into what they report, but one echoing server or one
exception message that quotes a URL would undo that; so every output goes through :func:`scrub`
on its way out, whatever produced it.
"""
from __future__ import annotations

import base64
import os
import re
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
API_KEY_VARS = ("SPEEDBENCH_API_KEY", "OPENAI_API_KEY")

# scheme://user:password@host -> scheme://***@host
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"<>]+@")
# ?api_key=... &token=... in a URL
_QUERY = re.compile(r"([?&](?:api[_-]?key|key|token|access[_-]?token|password|passwd|secret|auth)=)[^&#\s'\"<>]+",
                    re.IGNORECASE)
# Authorization header values
_AUTH = re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE)

_extra: set[str] = set()


def register_endpoint(url: str | None) -> None:
    """Remember the credentials of an endpoint URL, so they are masked wherever they show up
    (also without their URL, e.g. as a base64 Basic-auth header a server echoes)."""
    if not url:
        return
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return
    user, password = parts.username, parts.password
    for value in (password, unquote(password or "")):
        if value and len(value) >= 3:
            _extra.add(value)
    if user is not None and password is not None:
        for pair in (f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"):
            _extra.add(base64.b64encode(pair.encode()).decode())


def secret_values() -> list[str]:
    """Literal secrets to mask: the API keys in the environment and registered credentials;
    longest first, so a key that contains another is masked whole."""
    values = {os.environ.get(var) or "" for var in API_KEY_VARS} | _extra
    return sorted((v for v in values if len(v) >= 3), key=len, reverse=True)


def scrub_text(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, MASK)
    text = _USERINFO.sub(rf"\g<1>{MASK}@", text)
    text = _QUERY.sub(rf"\g<1>{MASK}", text)
    return _AUTH.sub(rf"\g<1>\g<2>{MASK}", text)


def scrub(value: Any) -> Any:
    """A copy of a JSON-like value with every string scrubbed (dict keys included)."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) for v in value)
    return value


def contains_secret(text: str) -> bool:
    return scrub_text(text) != text
