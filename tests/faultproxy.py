"""A fault-injecting HTTP proxy for the fault tests: asyncio on 127.0.0.1, in front of a real server.

Every request is forwarded to the upstream server as it came (one request per connection:
``Connection: close`` both ways) unless a :class:`Rule` matches it by path prefix and
``X-Request-Id`` (the openai engine sends its request id there). A rule then injects one fault:

* ``status``: answer HTTP ``status`` (with ``Retry-After`` if given) without contacting the server;
* ``close``: drop the connection without an answer (an unreachable ``/metrics``);
* ``echo``: answer 500 with the request's own head (a server that echoes credentials back);
* on a server-sent-event stream, after ``after_events`` events with token ids:
  ``reset`` (TCP reset), ``stall`` (send nothing more, keep the connection open), ``malformed``
  (one line that is not JSON), ``drop_token_ids`` (one chunk without its ``token_ids``);
* ``inflate``: every chunk's token ids repeated ``factor`` times (a response 10x larger than asked);
* ``zero_counters``: ``/metrics`` with every ``vllm:spec_decode_*_total`` counter at 0 (what a
  restarted server shows), once a request whose id contains ``after_request`` has been seen.

``refuse_for(seconds)`` closes the listening socket (connection refused) and reopens it on the
same port. ``seen`` lists every request the proxy read, with the fault it got.

A test session in another process sets the rules through the proxy itself: ``POST
/__faultproxy__/rules`` with a JSON list of rules (the fields of :class:`Rule`), ``POST
/__faultproxy__/refuse`` with ``{"seconds": S}`` (see :func:`control`).
"""
from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

CONTROL = "/__faultproxy__/"


def control(proxy_url: str, what: str, payload: Any) -> None:
    """Set the rules (``what="rules"``, a list of dicts) or refuse connections (``"refuse"``,
    ``{"seconds": S}``) of a proxy running in another process."""
    import httpx

    httpx.post(f"{proxy_url}{CONTROL}{what}", json=payload, timeout=30).raise_for_status()


@dataclass
class Rule:
    fault: str
    path: str = "/v1/completions"
    request_id: str | None = None  # a substring of X-Request-Id; None: any
    times: int | None = None  # only the first N matching requests; None: all
    status: int = 500
    retry_after: str | None = None
    after_events: int = 1
    factor: int = 10
    after_request: str | None = None  # zero_counters: active once such a request id was seen
    hits: int = 0


@dataclass
class Seen:
    t: float
    method: str
    path: str
    request_id: str | None
    fault: str | None


@dataclass
class _Head:
    first_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def encode(self, drop: tuple[str, ...] = (), add: tuple[tuple[str, str], ...] = ()) -> bytes:
        lines = [self.first_line]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in drop]
        lines += [f"{k}: {v}" for k, v in add]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> _Head:
    raw = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    first, *rest = raw.split("\r\n")
    head = _Head(first)
    for line in rest:
        if line:
            key, _, value = line.partition(":")
            head.headers.append((key.strip(), value.strip()))
    return head


async def _body(reader: asyncio.StreamReader, head: _Head) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive: chunked, by Content-Length, or until the server closes."""
    if (head.get("transfer-encoding") or "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return
            data = await reader.readexactly(size)
            await reader.readline()
            yield data
    elif head.get("content-length") is not None:
        length = int(head.get("content-length") or 0)
        if length:
            yield await reader.readexactly(length)
    else:
        while data := await reader.read(65536):
            yield data


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_COUNTER = re.compile(r"^(vllm:spec_decode_\S*_total(?:\{[^}]*\})?)\s+\S+", re.MULTILINE)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    # --- control, from the test's thread ---

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_rules(self, rules: list[Rule]) -> None:
        with self._lock:
            self.rules = list(rules)

    def requests_for(self, request_id: str) -> list[Seen]:
        return [s for s in self.seen if s.request_id and request_id in s.request_id]

    def refuse_for(self, seconds: float) -> None:
        """Stop listening now (connections are refused) and listen again after ``seconds``."""
        self._call(self._stop_listening())
        self._loop.call_soon_threadsafe(lambda: self._loop.call_later(seconds, self._relisten))

    def close(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # --- on the proxy's loop ---

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def _relisten(self) -> None:
        self._loop.create_task(self._listen())

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _shutdown(self) -> None:
        await self._stop_listening()
        for task in list(self._tasks):
            task.cancel()

    def _match(self, path: str, request_id: str | None) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if not path.startswith(rule.path):
                    continue
                if rule.request_id is not None and (request_id is None or rule.request_id not in request_id):
                    continue
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                if rule.after_request is not None and not self.requests_for(rule.after_request):
                    continue
                rule.hits += 1
                return rule
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        body = await reader.readexactly(int(head.get("content-length") or 0))
        method, path = head.first_line.split(" ")[:2]
        if path.startswith(CONTROL):
            await self._control(path.removeprefix(CONTROL), json.loads(body or b"null"), writer)
            return
        request_id = head.get("x-request-id")
        rule = self._match(path, request_id)
        self.seen.append(Seen(time.monotonic(), method, path, request_id, rule.fault if rule else None))
        if rule is not None and rule.fault == "close":
            self._reset(writer)
            return
        if rule is not None and rule.fault in ("status", "echo"):
            await self._answer(writer, rule, head)
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            up_writer.write(head.encode(drop=("connection",), add=(("Connection", "close"),)) + body)
            await up_writer.drain()
            response = await _read_head(up_reader)
            writer.write(response.encode(drop=("connection", "content-length", "transfer-encoding"),
                                         add=(("Transfer-Encoding", "chunked"), ("Connection", "close"))))
            if rule is not None and rule.fault == "zero_counters":
                text = b"".join([part async for part in _body(up_reader, response)]).decode()
                writer.write(_chunk(_COUNTER.sub(r"\1 0.0", text).encode()))
            elif "text/event-stream" in (response.get("content-type") or ""):
                if not await self._events(up_reader, response, writer, rule):
                    return
            else:
                async for part in _body(up_reader, response):
                    writer.write(_chunk(part))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            up_writer.close()

    async def _control(self, what: str, payload: Any, writer: asyncio.StreamWriter) -> None:
        if what == "rules":
            self.set_rules([Rule(**rule) for rule in payload])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        if what == "refuse":
            await self._stop_listening()
            self._loop.call_later(float(payload["seconds"]), self._relisten)

    async def _answer(self, writer: asyncio.StreamWriter, rule: Rule, head: _Head) -> None:
        if rule.fault == "echo":
            status, text = 500, "internal error while handling:\n" + head.encode().decode("latin-1")
        else:
            status, text = rule.status, json.dumps({"error": {"message": f"injected HTTP {rule.status}",
                                                              "code": rule.status}})
        data = text.encode()
        extra = f"Retry-After: {rule.retry_after}\r\n" if rule.retry_after is not None else ""
        writer.write(f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                     f"{extra}Connection: close\r\n\r\n".encode() + data)
        await writer.drain()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        """Close with a TCP reset, not a clean FIN."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _events(self, up_reader: asyncio.StreamReader, response: _Head, writer: asyncio.StreamWriter,
                      rule: Rule | None) -> bool:
        """Relay a server-sent-event stream event by event, faulting it per ``rule``; False when the
        connection was cut."""
        buffer, with_tokens = b"", 0
        async for part in _body(up_reader, response):
            buffer += part
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                event += b"\n\n"
                has_tokens = b'"token_ids":[' in event.replace(b" ", b"") and b'"token_ids":[]' not in event.replace(b" ", b"")
                if rule is not None and has_tokens and with_tokens >= rule.after_events:
                    if rule.fault == "reset":
                        await writer.drain()
                        self._reset(writer)
                        return False
                    if rule.fault == "stall":
                        await writer.drain()
                        await asyncio.sleep(3600)
                        return False
                    if rule.fault == "malformed":
                        writer.write(_chunk(b'data: {"choices": [{"token_ids": [1, 2\n\n'))
                        rule = None
                    elif rule.fault == "drop_token_ids":
                        event = self._edit(event, lambda choice: choice.pop("token_ids", None))
                        rule = None
                if rule is not None and rule.fault == "inflate" and has_tokens:
                    event = self._edit(event, lambda choice, n=rule.factor: choice.update(token_ids=choice["token_ids"] * n))
                with_tokens += has_tokens
                writer.write(_chunk(event))
                await writer.drain()
        if buffer:
            writer.write(_chunk(buffer))
        return True

    @staticmethod
    def _edit(event: bytes, change: Any) -> bytes:
        text = event.decode().strip()
        obj = json.loads(text.removeprefix("data:").strip())
        for choice in obj.get("choices") or []:
            change(choice)
        return f"data: {json.dumps(obj)}\n\n".encode()
