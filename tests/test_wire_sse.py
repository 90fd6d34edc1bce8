"""The streaming hot path's wire parsing: server-sent events from raw socket reads, and typed
``/v1/completions`` chunks (the ``openai`` engine's per-chunk work)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from speedbench_plugin.engines.base import EngineError
from speedbench_plugin.engines.wire import (
    completion_chunk,
    completion_error,
    is_done,
    iter_sse,
    parse_json_event,
)


async def _reads(parts: Sequence[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        await asyncio.sleep(0.002)  # each read arrives later than the one before


def _events(parts: Sequence[bytes]) -> list[tuple[float, bytes]]:
    async def collect() -> list[tuple[float, bytes]]:
        return [event async for event in iter_sse(_reads(parts))]

    return asyncio.run(collect())


def test_data_lines_are_cut_out_of_reads_split_anywhere() -> None:
    body = b'data: {"a":1}\n\n: keep-alive\n\ndata:{"b":2}\r\n\r\nevent: x\ndata: [DONE]\n\n'
    whole = _events([body])
    assert [data for _, data in whole] == [b'{"a":1}', b'{"b":2}', b"[DONE]"]
    for cut in range(1, len(body)):
        assert [data for _, data in _events([body[:cut], body[cut:]])] == [data for _, data in whole], cut


def test_an_event_is_stamped_when_the_read_that_ends_its_line_arrives() -> None:
    events = _events([b'data: {"a"', b':1}\ndata: {"b":2}\n', b'data: {"c":3}\n'])
    (t_a, a), (t_b, b), (t_c, c) = events
    assert (a, b, c) == (b'{"a":1}', b'{"b":2}', b'{"c":3}')
    assert t_a == t_b < t_c  # a and b ended in the second read, c in the third
    assert _events([b'data: {"last":1}'])[0][1] == b'{"last":1}'  # a last line without its newline


def test_completion_chunks_are_typed_and_bad_ones_named() -> None:
    chunk = completion_chunk(b'{"id":"x","choices":[{"index":0,"text":"hi","token_ids":[5,6],"finish_reason":null,'
                             b'"logprobs":null}],"usage":null}', "u")
    assert chunk.choices is not None and chunk.choices[0].token_ids == (5, 6) and chunk.choices[0].finish_reason is None
    final = completion_chunk(b'{"choices":[],"metrics":{"speculative_decoding":{"num_spec_steps":1}}}', "u")
    assert final.metrics == {"speculative_decoding": {"num_spec_steps": 1}}
    assert completion_chunk(b'{"choices":[{"index":0}]}', "u").choices[0].token_ids is None  # type: ignore[index]
    err = completion_chunk(b'{"error":{"message":"KV cache exhausted","code":500}}', "u")
    assert completion_error(err) == "KV cache exhausted, code 500"
    with pytest.raises(EngineError, match="u: stream sent a non-JSON event"):
        completion_chunk(b"{not json", "u")
    with pytest.raises(EngineError, match="stream sent list, expected a JSON object"):
        completion_chunk(b"[1, 2]", "u")
    with pytest.raises(EngineError, match="not a completions chunk"):
        completion_chunk(b'{"choices":[{"token_ids":["a"]}]}', "u")
    assert is_done(b"[DONE]") and parse_json_event(b"[DONE]", "u") is None
    assert parse_json_event(b'{"meta_info":{}}', "u") == {"meta_info": {}}
