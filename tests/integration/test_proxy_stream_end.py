"""A client that stops reading at a stream's final event is not a client disconnect.

The ``openai`` SDK closes the response as soon as it reads ``data: [DONE]``; an Anthropic caller
may leave at ``message_stop``. The provider's end of the HTTP body (the chunked terminator
``0\\r\\n\\r\\n``) can still be on its way: then the client's close reaches the proxy first. The
client has the whole answer, so the call is logged complete, and the proxy reads the provider's
last bytes (within ``upstream_drain_timeout_s`` / ``upstream_drain_max_bytes``) so the
connection goes back to the pool instead of costing the next call a new connection (and a TLS
handshake). A client leaving *before* the final event is still a disconnect, cut at once.

The provider here is written byte by byte (``RawUpstream``) and holds its terminator until the
test lets it go, so the race is played the same way every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llmtap.consumer.handlers.anthropic_messages import parse_messages_stream
from llmtap.consumer.handlers.openai_chat import parse_chat_stream
from llmtap.consumer.handlers.sse import parse_sse
from llmtap.consumer.handlers.usage import ParsedResponse
from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.stores.factory import open_body_store
from support.probes import published_records, wait_for
from support.raw_upstream import RawConnection, RawRequest, RawUpstream, response

SHORT_DRAIN_S = 0.3
"""For the provider that never ends: the connection is dropped this soon."""
LONG_DRAIN_S = 30.0
"""For the others: longer than any test takes, so the test decides when the provider ends."""

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
TERMINATOR = b"0\r\n\r\n"


def sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    line = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    named = f"event: {event}\n" if event else ""
    return f"{named}data: {line}\n\n".encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


OPENAI_EVENTS = [
    sse(None, {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
    sse(None, {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "lo"}}]}),
    sse(
        None,
        {
            "id": "c1",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        },
    ),
    sse(None, "[DONE]"),
]
ANTHROPIC_EVENTS = [
    sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 1},
            },
        },
    ),
    sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hello"},
        },
    ),
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 3},
        },
    ),
    sse("message_stop", {"type": "message_stop"}),
]


def answer_for(caller: bytes) -> bytes:
    return b'{"answer_for":"%s"}' % caller


def caller_of(request: RawRequest) -> bytes:
    return request.header(b"x-caller") or b"?"


Handler = Callable[[RawConnection], Coroutine[Any, Any, None]]


def provider(events: list[bytes], after: str, release: threading.Event) -> Handler:
    """The first call gets ``events`` (one chunk each), then, once the test
    sets ``release``: the terminator (``after="terminator"``), nothing (``"silence"``) or a flood
    of further chunks (``"flood"``). Every later call gets a JSON answer naming
    their caller, so a stale byte would show in the wrong answer."""

    async def stream(conn: RawConnection) -> None:
        if await conn.read_request() is None:
            return
        await conn.send(STREAM_HEAD + b"".join(chunk(e) for e in events))
        if not await released_or_closed(conn, release):
            return
        if after == "terminator":
            await conn.send(TERMINATOR)
        elif after == "flood":
            for _ in range(64):  # 64 x 4 KiB: past any sane drain limit
                await conn.send(chunk(b": keep-alive" + b" " * 4080 + b"\n\n"))

    async def handler(conn: RawConnection) -> None:
        if conn.index == 0:
            await stream(conn)
        while (request := await conn.read_request()) is not None:
            await conn.send(response(answer_for(caller_of(request))))

    return handler


async def released_or_closed(conn: RawConnection, release: threading.Event) -> bool:
    """Hold until the test sets ``release`` (True) or the proxy closes the connection (False):
    the proxy sends nothing on it meanwhile, so one byte read can only be its end."""
    loop = asyncio.get_running_loop()
    released = asyncio.ensure_future(loop.run_in_executor(None, release.wait, 10))
    closed = asyncio.ensure_future(conn.reader.read(1))
    await asyncio.wait([released, closed], return_when=asyncio.FIRST_COMPLETED)
    if closed.done():
        conn.peer_closed = True
        return False
    closed.cancel()  # nothing was read: the next request is still whole in the reader
    with contextlib.suppress(asyncio.CancelledError):
        await closed
    return True


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets the provider go on; set at the end whatever happened, so no thread waits on it."""
    event = threading.Event()
    yield event
    event.set()


def settings_for(tmp_path: Path, upstream: RawUpstream, drain_s: float = LONG_DRAIN_S) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=upstream.url,
        anthropic_base_url=upstream.url,
        upstream_drain_timeout_s=drain_s,
    )


def logged(settings: Settings, request_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: published_records(settings).get(request_id), timeout_s=10, what="the record"
    )


def stored_body(settings: Settings, record: dict[str, Any]) -> bytes:
    bodies = open_body_store(settings.bodies_url)
    try:
        return bodies.get(record["response_body"]["key"])
    finally:
        bodies.close()


def post(url: str, caller: str) -> Any:
    reply = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "m", "messages": []},
        headers={"authorization": "Bearer sk-x", "x-caller": caller},
        timeout=5,
    )
    return reply.json()


def openai_reads_to_done(proxy: ThreadedProxy, request_id: str) -> str:
    """The real SDK: it stops at ``[DONE]`` and closes the response."""
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-x", max_retries=0)
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={"helicone-request-id": request_id},
        timeout=5,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    client.close()
    return text


def anthropic_reads_to_message_stop(proxy: ThreadedProxy, request_id: str) -> str:
    """The real SDK, its caller leaving at ``message_stop`` (the SDK would wait for the end)."""
    client = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-x", max_retries=0)
    stream = client.messages.create(
        model="claude-x",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={"helicone-request-id": request_id},
        timeout=5,
    )
    text = ""
    for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
        if event.type == "message_stop":
            break
    stream.close()
    client.close()
    return text


CASES: dict[str, tuple[list[bytes], Callable[[ThreadedProxy, str], str], Any]] = {
    "openai chat [DONE]": (OPENAI_EVENTS, openai_reads_to_done, parse_chat_stream),
    "anthropic message_stop": (
        ANTHROPIC_EVENTS,
        anthropic_reads_to_message_stop,
        parse_messages_stream,
    ),
}


def check_complete_record(
    settings: Settings, request_id: str, parse: Callable[..., ParsedResponse]
) -> ParsedResponse:
    record = logged(settings, request_id)
    assert (record["status"], record.get("error")) == (200, None)
    parsed = parse(parse_sse(stored_body(settings, record)))
    assert parsed.complete and parsed.usage is not None
    return parsed


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_client_leaving_at_the_final_event_is_logged_complete_and_the_connection_is_reused(
    tmp_path: Path, case: str, release: threading.Event
) -> None:
    events, read_to_final_event, parse = CASES[case]
    request_id = str(uuid.uuid4())
    with (
        RawUpstream(provider(events, "terminator", release)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        settings = settings_for(tmp_path, upstream)
        # the client has its whole answer and has gone before the provider's body ended
        assert read_to_final_event(proxy, request_id) == "Hello"
        parsed = check_complete_record(settings, request_id, parse)
        assert parsed.usage is not None and parsed.usage.output in (2, 3)
        first = upstream.connections[0]
        assert not first.peer_closed, "the provider connection was dropped, not drained"
        release.set()  # the terminator arrives after the client left
        wait_for(
            lambda: len(proxy.upstream_pool.idle_connections()) == 1,
            timeout_s=5,
            what="the drained connection back in the pool",
        )
        # the next caller goes on that same connection and gets its own answer
        for caller in ("next", "after"):
            assert post(proxy.url, caller) == {"answer_for": caller}
        assert [len(c.requests) for c in upstream.connections] == [3]
        assert proxy.metrics.client_disconnects == 0


@pytest.mark.parametrize(
    ("after", "drain_s"),
    [
        ("silence", SHORT_DRAIN_S),  # dropped by the time bound
        ("flood", LONG_DRAIN_S),  # dropped by the byte bound, long before the time one
    ],
)
def test_a_provider_that_never_ends_after_the_final_event_is_dropped_after_the_bound(
    tmp_path: Path, after: str, drain_s: float, release: threading.Event
) -> None:
    request_id = str(uuid.uuid4())
    with (
        RawUpstream(provider(OPENAI_EVENTS, after, release)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream, drain_s)) as proxy,
    ):
        settings = settings_for(tmp_path, upstream, drain_s)
        assert openai_reads_to_done(proxy, request_id) == "Hello"
        check_complete_record(settings, request_id, parse_chat_stream)
        release.set()  # then the provider goes on with whatever ``after`` says, after the client left
        first = upstream.connections[0]
        wait_for(lambda: first.peer_closed, timeout_s=5, what="the proxy to drop the connection")
        assert proxy.upstream_pool.idle_connections() == []
        assert post(proxy.url, "next") == {"answer_for": "next"}
        assert [len(c.requests) for c in upstream.connections] == [1, 1]


def test_a_client_leaving_before_the_final_event_is_a_disconnect_cut_at_once(
    tmp_path: Path, release: threading.Event
) -> None:
    # ``release`` is never set here: the provider holds the rest of its stream
    request_id = str(uuid.uuid4())
    with (
        RawUpstream(provider(OPENAI_EVENTS[:2], "terminator", release)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        settings = settings_for(tmp_path, upstream)
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-x", max_retries=0)
        stream = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers={"helicone-request-id": request_id},
            timeout=5,
        )
        first_chunk = next(iter(stream))
        assert first_chunk.choices[0].delta.content == "Hel"
        stream.close()  # gone mid-answer
        client.close()
        record = logged(settings, request_id)
        assert (record["status"], record["error"]) == (200, "client_disconnected")
        first = upstream.connections[0]
        # cut at once, not after the drain bound: the provider still holds its stream open
        wait_for(lambda: first.peer_closed, timeout_s=5, what="the upstream call to be aborted")
        assert not release.is_set()
        assert post(proxy.url, "next") == {"answer_for": "next"}
        assert [len(c.requests) for c in upstream.connections] == [1, 1]
