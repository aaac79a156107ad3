"""Responses that carry no body whatever their headers say: to HEAD, and 204 / 304.

A HEAD response carries the headers a GET would get, ``content-length`` included, and no body.
The upstream parser cannot be told the request was HEAD (httptools does not expose llhttp's
skip-body flag), so it would wait for those bytes: the call hung until the idle timeout, and on a
pooled connection the next caller's answer would have been read as the HEAD's body. llhttp knows
by itself that 204 and 304 have no body; the tests below hold it to that.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from support.probes import published_records, wait_for
from support.raw_upstream import RawConnection, RawUpstream, response

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
HEAD_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1234\r\n\r\n"


def settings_for(tmp_path: Path, upstream: RawUpstream) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=upstream.url,
        anthropic_base_url=upstream.url,
    )


def logged(settings: Settings, request_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: published_records(settings).get(request_id), timeout_s=10, what="the record"
    )


async def head_then_answers(conn: RawConnection) -> None:
    """HEAD gets the GET's headers and no body; the connection stays open for more."""
    while (request := await conn.read_request()) is not None:
        if request.head.startswith(b"HEAD "):
            await conn.send(HEAD_ANSWER)
        else:
            caller = request.header(b"x-caller") or b"?"
            await conn.send(response(b'{"answer_for":"%s"}' % caller))


def test_a_head_answer_with_a_content_length_completes_at_its_head(tmp_path: Path) -> None:
    head_id = str(uuid.uuid4())
    with (
        RawUpstream(head_then_answers) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
        httpx.Client(base_url=proxy.url, timeout=3) as client,
    ):
        headers = {"authorization": "Bearer sk-x"}
        reply = client.head("/v1/models", headers={**headers, "helicone-request-id": head_id})
        assert reply.status_code == 200
        assert reply.headers["content-length"] == "1234"
        assert reply.content == b""
        # same client connection: the proxy must have finished the HEAD exchange to answer this
        after = client.post("/v1/chat/completions", json=CHAT, headers={**headers, "x-caller": "b"})
        assert after.json() == {"answer_for": "b"}

        record = logged(settings_for(tmp_path, upstream), head_id)
        assert (record["method"], record["status"], record.get("error")) == ("HEAD", 200, None)

        # The HEAD's connection is never reused: bytes after a HEAD head cannot be framed.
        first = upstream.connections[0]
        wait_for(lambda: first.peer_closed, timeout_s=5, what="the HEAD's connection to close")
        assert [len(c.requests) for c in upstream.connections] == [1, 1]


def test_calls_after_a_head_each_get_their_own_answer(tmp_path: Path) -> None:
    with (
        RawUpstream(head_then_answers) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        auth = {"authorization": "Bearer sk-x"}
        for caller in ("one", "two", "three"):
            head = httpx.head(proxy.url + "/v1/models", headers=auth, timeout=3)
            assert head.status_code == 200
            reply = httpx.post(
                proxy.url + "/v1/chat/completions",
                json=CHAT,
                headers={**auth, "x-caller": caller},
                timeout=3,
            )
            assert reply.json() == {"answer_for": caller}


BODILESS = {
    b"204": b"HTTP/1.1 204 No Content\r\nx-kind: none\r\n\r\n",
    # a 304 may announce the length of the representation it stands for
    b"304": b'HTTP/1.1 304 Not Modified\r\netag: "x"\r\ncontent-length: 1234\r\n\r\n',
}


async def bodiless_then_answers(conn: RawConnection) -> None:
    while (request := await conn.read_request()) is not None:
        status = request.header(b"x-status")
        if status is not None:
            await conn.send(BODILESS[status])
        else:
            caller = request.header(b"x-caller") or b"?"
            await conn.send(response(b'{"answer_for":"%s"}' % caller))


def test_204_and_304_end_at_their_head_and_keep_the_connection(tmp_path: Path) -> None:
    ids = {status: str(uuid.uuid4()) for status in BODILESS}
    with (
        RawUpstream(bodiless_then_answers) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
        httpx.Client(base_url=proxy.url, timeout=3) as client,
    ):
        auth = {"authorization": "Bearer sk-x"}
        for status, request_id in ids.items():
            reply = client.get(
                "/v1/models",
                headers={**auth, "x-status": status.decode(), "helicone-request-id": request_id},
            )
            assert reply.status_code == int(status)
            assert reply.content == b""
            after = client.post(
                "/v1/chat/completions", json=CHAT, headers={**auth, "x-caller": status.decode()}
            )
            assert after.json() == {"answer_for": status.decode()}
        # llhttp framed them right, so the one connection was safely reused throughout
        assert [len(c.requests) for c in upstream.connections] == [4]
        settings = settings_for(tmp_path, upstream)
        for status, request_id in ids.items():
            record = logged(settings, request_id)
            assert (record["status"], record.get("error")) == (int(status), None)
