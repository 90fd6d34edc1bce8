"""Any OpenAI-compatible endpoint (``--speedbench-engine openai --speedbench-endpoint URL``).

How a user reaches a multi-GPU or multi-node deployment. Token ids in, token ids out:

* **vLLM servers** (and other OpenAI-compatible servers that return token ids): streams
  ``POST /v1/completions`` with the token-id list as ``prompt``, ``stream: true``,
  ``return_token_ids: true`` (vLLM >= 0.10.2; each chunk's ``choices[0].token_ids`` is that chunk's
  new tokens) and ``stream_options.include_usage: true``. With the server flag
  ``--per-request-spec-decode-metrics summary|detailed``, vLLM puts the request's SD counters under
  ``metrics.speculative_decoding`` on the *final usage chunk* — only emitted when usage is requested
  (vllm/entrypoints/openai/completion/serving.py, ``completion_stream_generator``; field list in
  vllm/entrypoints/generate/base/protocol.py ``SpeculativeDecodingMetrics``). Cumulative counters
  come from ``GET /metrics`` (``vllm:spec_decode_num_drafts_total``, ``..._num_draft_tokens_total``,
  ``..._num_accepted_tokens_total``, ``..._num_accepted_tokens_per_pos_total{position="i"}``),
  summed over ``engine``/``model_name`` labels and taken as deltas from ``start()``.
* **SGLang servers** (``engine_args: {api: sglang}``, or detected from ``/server_info``): streams
  SGLang's native ``POST /generate`` with ``input_ids``, because its OpenAI routes return text and
  hide ``meta_info``; per-request counters from the final chunk's ``meta_info``. SGLang has no
  cumulative draft/accept counters, so ``counters()`` sums the per-request ones and says so in the
  source.

``start()`` probes the server rather than trusting its version: one 4-token request shows whether
``/v1/completions`` returns token ids (required: an error naming vLLM >= 0.10.2 otherwise) and
per-request ``metrics.speculative_decoding`` (with the ``detailed`` per-step lists or not), and a
scrape shows whether ``/metrics`` has SD counters. What is missing is named in
``capabilities.missing`` and ``describe()``. Payloads are parsed in :mod:`.wire`.

The API key comes from ``SPEEDBENCH_API_KEY`` or ``OPENAI_API_KEY``; it is sent as a bearer token and
never stored in results or error messages.

``engine_args`` (all optional): ``api`` (``auto``|``openai``|``sglang``), ``served_model_name`` (the
name the server knows, when it differs from ``--speedbench-model``), ``timeout`` (seconds per read,
default 600), ``connect_timeout`` (default 10), ``extra_body`` (merged into every request body),
``metrics_path`` (default ``/metrics``), ``server_log`` (the server's log file: a failed start quotes
its exception lines or last error lines), ``metrics_urls`` (behind a load balancer: each replica's
own ``/metrics`` URL, a list or comma string; the counters are their sum, so the cross-check sees
every replica, not the one the router happened to pick for the scrape).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
import warnings
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import msgspec

from speedbench_plugin.engines import _http, wire
from speedbench_plugin.engines._http import StreamError
from speedbench_plugin.engines.base import (
    Chunk,
    Engine,
    EngineCapabilities,
    EngineConfig,
    EngineError,
    RequestNotStarted,
    Sampling,
    SpecCounts,
    StreamResult,
)
from speedbench_plugin.engines.startlog import server_log_cause

_OWN_ARGS = {"api", "served_model_name", "timeout", "connect_timeout", "extra_body", "metrics_path", "server_log",
             "metrics_urls"}
SGLANG_TOTAL = "sglang:meta_info(sum over requests)"
PROBE_PROMPT = (0, 1, 2, 3)
PROBE_TOKENS = 4
GET_TIMEOUT_S = 60


def completion_body(model: str, prompt_ids: Sequence[int], sampling: Sampling, extra: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "prompt": list(prompt_ids),
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "stream": True,
        "stream_options": {"include_usage": True},
        "return_token_ids": True,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.ignore_eos:
        body["ignore_eos"] = True  # vLLM/SGLang extension; left out otherwise for strict servers
    body.update(extra)
    return body


def sglang_body(prompt_ids: Sequence[int], sampling: Sampling, extra: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input_ids": list(prompt_ids), "sampling_params": wire.sglang_sampling_params(sampling), "stream": True,
    }
    body.update(extra)
    return body


def _retry_after(value: str | None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        if not config.endpoint:
            raise EngineError("--speedbench-engine openai needs --speedbench-endpoint URL (e.g. http://127.0.0.1:8000)")
        self.endpoint = _http.endpoint(config.endpoint)
        self.base = self.endpoint.base
        args = config.engine_args
        unknown = set(args) - _OWN_ARGS
        if unknown:
            raise EngineError(
                f"openai engine: unknown engine args {', '.join(sorted(unknown))}; server-side settings "
                f"belong on the server's command line (known here: {', '.join(sorted(_OWN_ARGS))})"
            )
        self.api: str = args.get("api", "auto")
        if self.api not in ("auto", "openai", "sglang"):
            raise EngineError(f"openai engine: api must be auto, openai or sglang, not {self.api!r}")
        self.model_name: str = args.get("served_model_name") or config.model
        self._client: Any = None
        self._session: Any = None  # aiohttp, for the streams (see _stream_session)
        self._server_version = "unknown"
        self._resolved: dict[str, Any] | None = None  # the configuration the server reports it resolved
        self._baseline: SpecCounts | None = None
        # Each replica's counters at the last scrape (SD counts, generated tokens), and at the first and
        # last counters() read since the previous describe(): a case's window, for the replicas it saw.
        self._replica_marks: list[tuple[SpecCounts, int | None]] = []
        self._window: tuple[list[tuple[SpecCounts, int | None]], list[tuple[SpecCounts, int | None]]] | None = None
        self._counters_note: str | None = None
        self._sglang_totals: list[SpecCounts] = []
        self._sglang_incremental: bool | None = None
        self._per_request: bool = False  # the probe saw metrics.speculative_decoding
        self._per_step: bool = False  # ... with the detailed per-step lists
        self._missing: list[str] = []
        self._probe: dict[str, Any] = {}
        self._headers, self._basic_auth = self._auth()  # here, on the caller's thread: its warning reaches pytest

    @property
    def version(self) -> str:
        return f"{self.api} server {self._server_version}"

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def _read_timeout(self) -> float:
        return float(self.config.engine_args.get("timeout", 600))

    @property
    def _connect_timeout(self) -> float:
        return float(self.config.engine_args.get("connect_timeout", 10))

    @property
    def _get_timeout(self) -> float:
        """GETs (models, version, /metrics) answer at once on a live server: a silent one is named
        within a minute, not after the long read timeout meant for generation."""
        return min(self._read_timeout, GET_TIMEOUT_S)

    def _auth(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        """Headers and Basic auth: the URL's ``user:password@`` when given (it names this server),
        else the API key as a bearer token. Both set: the URL's win, and a warning says so."""
        credentials = self.endpoint.credentials
        if credentials is None:
            return _http.auth_headers(), None
        if _http.api_key():
            warnings.warn(
                f"speedbench: --speedbench-endpoint {_http.public_url(self.base)} carries user:password@ (HTTP Basic "
                f"auth) and {' or '.join(_http.API_KEY_VARS)} is set (a bearer token): both need the Authorization "
                "header, so the URL's credentials are sent and the key is not; remove one of them to choose",
                UserWarning, stacklevel=2)
        return {}, credentials

    async def start(self) -> None:
        """Probe the server; a failure names the server's own last error when engine arg
        ``server_log=PATH`` points at its log (the server is not this process's child)."""
        try:
            await self._start()
        except EngineError as exc:
            log = self.config.engine_args.get("server_log")
            cause = server_log_cause(Path(str(log))) if log else None
            if cause:
                raise EngineError(f"{exc}; the server's log {log} says: {cause}") from exc
            raise

    async def _start(self) -> None:
        import httpx

        timeout = httpx.Timeout(self._read_timeout, connect=self._connect_timeout)
        headers, auth = self._headers, self._basic_auth
        self._client = httpx.AsyncClient(base_url=self.base, headers=headers, auth=auth, timeout=timeout,
                                         params=list(self.endpoint.params))
        try:
            models = await self._get_json("/v1/models")
            served = [m.get("id") for m in models.get("data", []) if isinstance(m, dict)]
            self._resolved = wire.served_model_config(models, self.model_name,
                                                      f"{_http.public_url(self.base)}/v1/models")
            if self.model_name not in served:
                raise EngineError(
                    f"{self.base} does not serve model {self.model_name!r}; it serves: {', '.join(map(str, served)) or 'nothing'}"
                    " (pass engine arg served_model_name=NAME if the server uses another name)"
                )
            if self.api == "auto":
                self.api = await self._detect_api()
            if self.api == "sglang":
                await self._read_sglang_info()
            else:
                await self._read_vllm_info()
        except BaseException:
            # stop() may run while this cleanup waits (a start cut by its timeout or an interrupt):
            # whichever comes first takes the client and closes it, once.
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()
            raise

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _get(self, path: str) -> Any:
        import httpx

        client = self._client
        if client is None:
            raise EngineError(f"endpoint {self.base}: GET {path} after the engine was stopped")
        try:
            return await client.get(path, timeout=httpx.Timeout(self._get_timeout, connect=self._connect_timeout))
        except httpx.ConnectError as exc:
            raise EngineError(f"endpoint {self.base} is unreachable ({exc}); is the server running?") from exc
        except httpx.TimeoutException as exc:
            raise EngineError(
                f"endpoint {self.base} did not answer GET {path} within {self._get_timeout:g} s (GETs wait at most "
                f"{GET_TIMEOUT_S} s; --speedbench-engine-args timeout=S sets less); is the server up, and is it an "
                f"OpenAI-compatible server? ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:  # e.g. a server that does not speak HTTP
            raise EngineError(
                f"endpoint {self.base}: GET {path} failed: {type(exc).__name__}: {exc or 'no detail'}; is "
                "--speedbench-endpoint the URL of an OpenAI-compatible HTTP server (http:// or https:// as it "
                "expects)?") from exc

    async def _get_json(self, path: str) -> dict[str, Any]:
        response = await self._get(path)
        if response.status_code in (401, 403):
            raise EngineError(
                f"{self.base}{path}: HTTP {response.status_code}, the server rejected the API key "
                f"(set {' or '.join(_http.API_KEY_VARS)})"
            )
        if response.status_code != 200:
            raise EngineError(f"{self.base}{path}: HTTP {response.status_code}: {_http.redact(response.text[:300])}")
        try:
            data = response.json()
        except ValueError:
            raise EngineError(f"{self.base}{path} did not answer JSON; is this an OpenAI-compatible server?") from None
        if not isinstance(data, dict):
            raise EngineError(f"{self.base}{path} answered {type(data).__name__}, expected a JSON object")
        return data

    async def _detect_api(self) -> str:
        for path in ("/server_info", "/get_server_info"):
            response = await self._get(path)
            if response.status_code == 200:
                try:
                    info = response.json()
                except ValueError:
                    continue
                if isinstance(info, dict) and ("model_path" in info or "speculative_algorithm" in info):
                    return "sglang"
        return "openai"

    async def _read_vllm_info(self) -> None:
        response = await self._get("/version")
        if response.status_code == 200:
            try:
                self._server_version = f"vllm {response.json().get('version', '?')}"
            except ValueError:
                pass
        await self._probe_completions()
        self._baseline = await self._scrape_vllm()
        if self._baseline is None:
            self._counters_note = (
                f"counters unavailable: {self.base}{self._metrics_path} exports no vllm:spec_decode_* counters "
                "(speculative decoding off, metrics disabled, or not a vLLM server)"
            )
            self._missing.append(self._counters_note)

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        client = self._client
        if client is None:
            raise EngineError(f"endpoint {self.base}: POST {path} after the engine was stopped")
        try:
            response = await client.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise EngineError(
                f"{self.base}{path}: the probe request got no answer within {self._read_timeout:g} s (the read timeout: "
                f"--speedbench-engine-args timeout=S) ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"{self.base}{path}: the probe request failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise EngineError(
                f"{self.base}{path}: the probe request got HTTP {response.status_code}: {_http.redact(response.text[:300])}"
            )
        try:
            data = response.json()
        except ValueError:
            raise EngineError(f"{self.base}{path} did not answer the probe request with JSON") from None
        if not isinstance(data, dict):
            raise EngineError(f"{self.base}{path} answered the probe request with {type(data).__name__}")
        return data

    async def _probe_completions(self) -> None:
        """One short request: token ids (required), per-request SD metrics and their level."""
        body = {"model": self.model_name, "prompt": list(PROBE_PROMPT), "max_tokens": PROBE_TOKENS,
                "temperature": 0.0, "return_token_ids": True, "stream": False}
        answer = await self._post_json("/v1/completions", body)
        choices = answer.get("choices") or [{}]
        if choices[0].get("token_ids") is None:
            raise EngineError(
                f"{self.base}/v1/completions returns no token ids; speedbench needs `return_token_ids` "
                "(vLLM >= 0.10.2) to measure tokens exactly"
            )
        # vLLM sends the dict only once a step drafted: a short probe may see none although the
        # server has the flag, so later responses can still turn these on (never off).
        spec = (answer.get("metrics") or {}).get("speculative_decoding")
        self._probe = {"token_ids": True, "per_request_metrics": spec is not None}
        if spec is not None:
            self._per_request = True
            self._per_step = "per_step_accepted" in spec

    async def _read_sglang_info(self) -> None:
        info: dict[str, Any] = {}
        for path in ("/server_info", "/get_server_info"):
            response = await self._get(path)
            if response.status_code == 200:
                info = response.json()
                break
        self._server_version = f"sglang {info.get('version', '?')}"
        self._resolved = wire.sglang_resolved_config(info, "sglang: /get_server_info")
        for name in ("incremental_streaming_output", "stream_output"):
            if name in info:
                self._sglang_incremental = bool(info[name])
        if not info.get("speculative_algorithm"):
            self._counters_note = "counters unavailable: the SGLang server runs without speculative decoding"
            self._missing.append(self._counters_note)
            return
        # One short request shows which generation of meta_info names this release uses.
        body = sglang_body(PROBE_PROMPT, Sampling(max_tokens=PROBE_TOKENS), {})
        body["stream"] = False
        answer = await self._post_json("/generate", body)
        meta = answer.get("meta_info") or {}
        fields = wire.sglang_meta_fields(meta)
        self._probe = {"meta_info_fields": fields}
        if fields["accepted"] is None or fields["histogram"] is None:
            self._missing.append(
                f"SGLang meta_info lacks {'accepted-draft counts' if fields['accepted'] is None else 'a histogram'}: "
                "per-position rates are unavailable from the counters"
            )

    @property
    def _metrics_path(self) -> str:
        return str(self.config.engine_args.get("metrics_path", "/metrics"))

    @property
    def metrics_urls(self) -> list[str]:
        """Where the counters come from: each replica's metrics URL, or the endpoint's metrics path."""
        raw = self.config.engine_args.get("metrics_urls")
        urls = raw.split(",") if isinstance(raw, str) else list(raw or [])
        return [str(u).strip() for u in urls if str(u).strip()] or [self._metrics_path]

    async def _scrape_vllm(self) -> SpecCounts | None:
        """The counters summed over every replica; None unless every replica answered with some."""
        parts = []
        marks = []
        for url in self.metrics_urls:
            response = await self._get(url)  # an absolute URL leaves the endpoint's base aside
            counts = wire.vllm_counts_from_prometheus(response.text) if response.status_code == 200 else None
            if counts is None:
                return None
            parts.append(counts)
            marks.append((counts, wire.vllm_generation_tokens_from_prometheus(response.text)))
        self._replica_marks = marks
        return parts[0] if len(parts) == 1 else SpecCounts.total(parts, parts[0].source)

    def _replicas_seen(self) -> dict[str, Any]:
        """How many replicas served the window since the previous describe(): those whose SD or
        generated-token counters moved between its first and last counters() read. One metrics URL
        (or none) cannot tell replicas apart: the count is then unknown, not 1."""
        configured = len(self.metrics_urls) if self.config.engine_args.get("metrics_urls") else None
        window, self._window = self._window, None  # the next counters() read opens the next window
        info: dict[str, Any] = {"replicas_configured": configured, "replicas_seen": None}
        if configured is None or configured < 2:
            info["replicas_seen_source"] = "unknown: one metrics URL cannot tell replicas apart"
        elif window is None or window[0] is window[1]:  # no read, or a single one: nothing to compare
            info["replicas_seen_source"] = "unknown: no two counter reads of every replica since the last record"
        else:
            info["replicas_seen"] = sum(1 for a, b in zip(*window, strict=True) if a != b)
            info["replicas_seen_source"] = "per-replica counter deltas"
        return info

    # --- requests -------------------------------------------------------------------------------

    async def generate(self, prompt_ids: Sequence[int], sampling: Sampling, request_id: str) -> StreamResult:
        if self._client is None:
            raise EngineError("openai engine: generate() before start()")
        extra = dict(self.config.engine_args.get("extra_body", {}))
        if self.api == "sglang":
            path, body = "/generate", sglang_body(prompt_ids, sampling, extra)
        else:
            path, body = "/v1/completions", completion_body(self.model_name, prompt_ids, sampling, extra)
        result = StreamResult(request_id=request_id, prompt_tokens=len(prompt_ids), t_submit=0.0)
        await self._stream(path, body, result)
        return result

    def _stream_session(self) -> Any:
        """The streaming path's HTTP client, made on first use: aiohttp (its C HTTP parser and an
        unbounded connection pool: the runner's concurrency cap is the only limit), where httpx's
        pool and line iterator cost several times more CPU per chunk (see README, client cost)."""
        if self._session is None:
            import aiohttp

            args = self.config.engine_args
            basic = aiohttp.BasicAuth(*self._basic_auth) if self._basic_auth else None
            self._session = aiohttp.ClientSession(  # full URLs: a base with a path prefix keeps it
                headers=self._headers, auth=basic,
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                timeout=aiohttp.ClientTimeout(total=None, connect=float(args.get("connect_timeout", 10)),
                                              sock_read=float(args.get("timeout", 600))),
                skip_auto_headers=("User-Agent",), auto_decompress=False,
            )
        return self._session

    async def _stream(self, path: str, body: dict[str, Any], result: StreamResult) -> None:
        import aiohttp

        session = self._stream_session()
        url = f"{self.base}{path}"
        headers = {"X-Request-Id": result.request_id, "Content-Type": "application/json"}
        payload = msgspec.json.encode(body)
        try:
            result.t_submit = time.perf_counter()
            async with session.post(url, data=payload, headers=headers, params=list(self.endpoint.params)) as response:
                if response.status != 200:
                    text = (await response.read()).decode("utf-8", "replace")
                    message = f"{url}: HTTP {response.status}: {_http.redact(text[:500])}"
                    if response.status in (429, 503):  # refused before anything ran: may be sent again
                        raise RequestNotStarted(message, _retry_after(response.headers.get("retry-after")))
                    raise StreamError(message, result)
                events = wire.iter_sse(response.content.iter_any())
                if self.api == "sglang":
                    done = await self._read_sglang(events, url, result)
                else:
                    done = await self._read_openai(events, url, result)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:  # never connected: never started
            raise RequestNotStarted(f"endpoint {self.base} is unreachable ({type(exc).__name__}: {exc})") from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise StreamError(
                f"{url}: timed out after {result.output_tokens} tokens of request {result.request_id}", result
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise StreamError(
                f"{url}: the stream broke after {result.output_tokens} tokens of request {result.request_id}: {exc}",
                result,
            ) from exc
        if not done:
            raise StreamError(
                f"{url}: the stream ended without a finish reason after {result.output_tokens} tokens "
                f"of request {result.request_id}",
                result,
            )

    async def _read_openai(self, events: Any, url: str, result: StreamResult) -> bool:
        """The hot path: per chunk one typed decode (token ids and finish reason only) and one
        ``Chunk`` holding the decoder's own tuple; the rest of the record is built after the round."""
        finished = False
        chunks = result.chunks
        async for t, data in events:
            if wire.is_done(data):
                break
            obj = wire.completion_chunk(data, url)
            if obj.error is not None:
                message = wire.completion_error(obj)
                raise StreamError(f"{url}: server error mid-stream after {result.output_tokens} tokens: {message}", result)
            for choice in obj.choices or ():
                ids = choice.token_ids
                if ids is None:  # with return_token_ids every choice has them: tokens would go uncounted
                    raise StreamError(
                        f"{url} streams a chunk without token ids after {result.output_tokens} tokens of request "
                        f"{result.request_id}; speedbench needs `return_token_ids` (vLLM >= 0.10.2) to measure "
                        "tokens exactly",
                        result,
                    )
                if ids:
                    chunks.append(Chunk(t, ids))
                if choice.finish_reason:
                    result.finish_reason = choice.finish_reason
                    finished = True
            spec = (obj.metrics or {}).get("speculative_decoding")
            if spec:
                result.spec = wire.vllm_counts_from_spec_dict(spec)
                result.spec_raw = dict(spec)
                result.steps = wire.vllm_steps_from_spec_dict(spec)
                self._per_request = True
                self._per_step = self._per_step or "per_step_accepted" in spec
        return finished

    async def _read_sglang(self, events: Any, url: str, result: StreamResult) -> bool:
        acc = wire.SGLangOutputs(self._sglang_incremental)
        meta: dict[str, Any] = {}
        async for t, data in events:
            obj = wire.parse_json_event(data, url)
            if obj is None:
                break
            message = wire.error_message(obj)
            if message:
                raise StreamError(f"{url}: server error mid-stream after {result.output_tokens} tokens: {message}", result)
            meta = obj.get("meta_info") or {}
            new = acc.delta(obj.get("output_ids") or [], meta.get("completion_tokens"))
            if new:
                result.chunks.append(Chunk(t, tuple(new)))
        if not meta:
            return False
        k = self.config.drafter.k if self.config.drafter.enabled else None
        try:
            wire.sglang_finish(result, meta, k)
        except EngineError as exc:  # an SGLang abort: keep what streamed
            raise StreamError(f"{url}: {exc}", result) from exc
        if result.spec is not None:
            self._sglang_totals.append(result.spec)
        return result.finish_reason is not None

    # --- counters -------------------------------------------------------------------------------

    async def counters(self) -> SpecCounts | None:
        """Server counters since ``start()``; None ("counters unavailable") when it exports none."""
        if self._client is None or self._counters_note is not None:
            return None
        if self.api == "sglang":
            if not self._sglang_totals:
                return None
            return SpecCounts.total(self._sglang_totals, SGLANG_TOTAL)
        # The server updates Prometheus counters from its output loop, a moment after the last
        # token is sent: poll until two scrapes agree (bounded).
        previous = await self._scrape_vllm()
        for _ in range(20):
            await asyncio.sleep(0.05)
            current = await self._scrape_vllm()
            if current == previous:
                break
            previous = current
        if previous is None or self._baseline is None:
            return None
        marks = list(self._replica_marks)  # the settled scrape's, replica by replica
        self._window = (self._window[0] if self._window is not None else marks, marks)
        return previous - self._baseline

    @property
    def capabilities(self) -> EngineCapabilities:
        sources: list[str] = []
        if self.api == "sglang":
            if self._counters_note is None:
                sources = [wire.SGLANG_META_INFO, SGLANG_TOTAL]
        else:
            if self._per_request:
                sources.append(wire.VLLM_PER_REQUEST)
            if self._baseline is not None:
                sources.append(wire.VLLM_PROMETHEUS)
        missing = list(self._missing)
        if self.api != "sglang" and self.config.drafter.enabled:
            if not self._per_request:
                missing.append(
                    "no per-request SD metrics seen (server flag --per-request-spec-decode-metrics detailed, "
                    "vLLM >= 0.29): counters are server-wide /metrics deltas; drafts cut at a request's end cannot "
                    "be subtracted exactly, and the step histogram, per-position rates and CAR come from the stream alone"
                )
            elif not self._per_step:
                missing.append(
                    "no per-step record seen (server flag --per-request-spec-decode-metrics detailed, not summary): "
                    "the stream's step histogram stands unchecked against merged chunks"
                )
        return EngineCapabilities(
            counter_sources=tuple(sources),
            per_step_record=self._per_step,
            ceiling=False,
            missing=tuple(missing),
        )

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({"endpoint": _http.public_url(self.base), "api": self.api, "served_model_name": self.model_name,
                     "probe": dict(self._probe)})
        if self._resolved is not None:
            info["resolved_config"] = self._resolved
        if self._counters_note:
            info["counters"] = self._counters_note
        if len(self.metrics_urls) > 1:
            info["metrics_urls"] = [_http.public_url(u) for u in self.metrics_urls]
        if self.api != "sglang":
            info.update(self._replicas_seen())
        return info
