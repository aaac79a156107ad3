"""A provider that misbehaves: closes early, lies about lengths, sends bad chunking, a head
without end, or switches protocols.

Whatever it does, the caller gets a clean failure (a provider-shaped 502 before the head, a cut
response after it), the call is logged with the error, and nothing the provider sent on one
call ever reaches another caller: a connection that misbehaved is never reused.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from support.probes import published_records, wait_for
from support.raw_upstream import RawConnection, RawUpstream, response

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
Misbehaviour = Callable[[RawConnection], Awaitable[None]]


def honest(caller: bytes) -> bytes:
    return response(b'{"answer_for":"%s"}' % caller)


def first_call_gets(misbehaviour: Misbehaviour) -> Callable[[RawConnection], Awaitable[None]]:
    """A provider that misbehaves on the first request it sees and answers honestly after."""

    async def handler(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            if conn.index == 0 and len(conn.requests) == 1:
                await misbehaviour(conn)
            else:
                await conn.send(honest(request.header(b"x-caller") or b"?"))

    return handler


def settings_for(tmp_path: Path, upstream: RawUpstream) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=upstream.url,
        anthropic_base_url=upstream.url,
    )


def call(url: str, caller: str, request_id: str | None = None) -> tuple[int, Any] | str:
    """``(status, json body)``, or the client's error when the response was cut."""
    headers = {"authorization": "Bearer sk-x", "x-caller": caller}
    if request_id:
        headers["helicone-request-id"] = request_id
    try:
        reply = httpx.post(url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=10)
        return reply.status_code, reply.json()
    except httpx.HTTPError as exc:
        return type(exc).__name__


def logged(settings: Settings, request_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: published_records(settings).get(request_id), timeout_s=10, what="the record"
    )


async def close_mid_body(conn: RawConnection) -> None:
    await conn.send(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial":')
    conn.writer.close()


async def claim_more_then_close(conn: RawConnection) -> None:
    body = b'{"answer_for":"liar"}'
    await conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body) + 50, body))
    conn.writer.close()


async def bad_chunking(conn: RawConnection) -> None:
    await conn.send(b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"a":\r\nzz\r\n')


async def switch_protocols(conn: RawConnection) -> None:
    await conn.send(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    )


async def endless_head(conn: RawConnection) -> None:
    await conn.send(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n{}")


async def endless_interim_replies(conn: RawConnection) -> None:
    await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n" * 200_000 + honest(b"flood"))


CUT_AFTER_HEAD = {
    "close_mid_body": (close_mid_body, "upstream_disconnected"),
    "content_length_larger_than_body": (claim_more_then_close, "upstream_disconnected"),
    "invalid_chunked_encoding": (bad_chunking, "upstream_protocol_error"),
}
REFUSED_BEFORE_HEAD = {
    "switching_protocols": (switch_protocols, "upstream_protocol_error"),
    "response_head_too_large": (endless_head, "upstream_head_too_large"),
    "endless_interim_replies": (endless_interim_replies, "upstream_head_too_large"),
}


@pytest.mark.parametrize("case", sorted(CUT_AFTER_HEAD))
def test_a_response_cut_by_the_provider_is_cut_for_the_client_and_logged(
    tmp_path: Path, case: str
) -> None:
    misbehaviour, error = CUT_AFTER_HEAD[case]
    request_id = str(uuid.uuid4())
    with (
        RawUpstream(first_call_gets(misbehaviour)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        assert call(proxy.url, "victim", request_id) == "RemoteProtocolError"
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert (record["status"], record["error"]) == (200, error)
        assert call(proxy.url, "next") == (200, {"answer_for": "next"})
        assert [len(c.requests) for c in upstream.connections] == [1, 1]


@pytest.mark.parametrize("case", sorted(REFUSED_BEFORE_HEAD))
def test_a_provider_answer_we_cannot_relay_is_a_provider_shaped_502(
    tmp_path: Path, case: str
) -> None:
    misbehaviour, error = REFUSED_BEFORE_HEAD[case]
    request_id = str(uuid.uuid4())
    with (
        RawUpstream(first_call_gets(misbehaviour)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        status, body = call(proxy.url, "victim", request_id)
        assert status == 502
        assert body["error"]["code"] == error
        assert "httptools" not in body["error"]["message"].lower()
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert (record["status"], record["error"]) == (502, error)
        assert call(proxy.url, "next") == (200, {"answer_for": "next"})
        assert [len(c.requests) for c in upstream.connections] == [1, 1]


EXTRA_BYTES = {
    "a whole second response": honest(b"stale"),
    "the start of a second head": b"HTTP/1.1 200 OK\r\nx-stale: 1\r\n",
    "garbage": b"garbage that is no HTTP",
}


@pytest.mark.parametrize("extra", sorted(EXTRA_BYTES))
def test_bytes_beyond_content_length_never_reach_the_next_caller(
    tmp_path: Path, extra: str
) -> None:
    async def longer_than_announced(conn: RawConnection) -> None:
        await conn.send(honest(b"first") + EXTRA_BYTES[extra])

    with (
        RawUpstream(first_call_gets(longer_than_announced)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        assert call(proxy.url, "first") == (200, {"answer_for": "first"})
        first = upstream.connections[0]
        wait_for(lambda: first.peer_closed, timeout_s=5, what="the proxy to drop the connection")
        for caller in ("second", "third"):
            assert call(proxy.url, caller) == (200, {"answer_for": caller})
        assert [len(c.requests) for c in upstream.connections] == [1, 2]
        idle = proxy.upstream_pool.idle_connections()
        assert len(idle) == len(set(map(id, idle))) == 1


@pytest.mark.parametrize(
    "codings",
    [b"chunked, identity", b"notchunked", b"chunked\r\ntransfer-encoding: identity"],
)
def test_a_body_is_chunked_only_when_chunked_is_the_final_coding(
    tmp_path: Path, codings: bytes
) -> None:
    # llhttp frames such a response by the connection's close: so must the proxy, or the
    # complete answer is taken for one cut short
    async def close_delimited(conn: RawConnection) -> None:
        await conn.send(
            b'HTTP/1.1 200 OK\r\ntransfer-encoding: %s\r\n\r\n{"answer_for":"te"}' % codings
        )
        conn.writer.close()

    request_id = str(uuid.uuid4())
    with (
        RawUpstream(first_call_gets(close_delimited)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        assert call(proxy.url, "first", request_id) == (200, {"answer_for": "te"})
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert (record["status"], record.get("error")) == (200, None)
        assert call(proxy.url, "next") == (200, {"answer_for": "next"})
