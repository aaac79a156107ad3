"""A provider that answers garbage, resets the connection mid-stream, or sends a body longer or
shorter than its ``Content-Length``: each such call is *logged* with the error the client's
failure matches, and counted in ``llmtap_proxy_upstream_errors_total``. (What the client gets,
and that no byte reaches another caller, is ``test_proxy_hostile_upstream.py``'s part.)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from support.probes import published_records, wait_for
from support.raw_upstream import RawConnection, RawUpstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def sse_chunk(data: bytes) -> bytes:
    event = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


async def garbage(conn: RawConnection) -> None:
    await conn.read_request()
    await conn.send(b"\x00\x01garbage, no HTTP at all\r\n\r\n")
    conn.writer.close()


async def reset_before_head(conn: RawConnection) -> None:
    await conn.read_request()
    conn.reset()


async def reset_mid_stream(conn: RawConnection) -> None:
    await conn.read_request()
    await conn.send(SSE_HEAD + sse_chunk(b'{"choices":[{"delta":{"content":"he"}}]}'))
    conn.reset()


async def shorter_then_reset(conn: RawConnection) -> None:
    await conn.read_request()
    await conn.send(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial":')
    conn.reset()


async def longer_than_announced(conn: RawConnection) -> None:
    await conn.read_request()
    await conn.send(
        b'HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{"answer":42}{"extra":"never relayed"}'
    )
    conn.writer.close()


# name: (provider behaviour, status logged, error logged, counted as an upstream error)
CASES: dict[str, tuple[Any, int, str | None, bool]] = {
    "garbage_instead_of_a_response": (garbage, 502, "upstream_protocol_error", True),
    "reset_before_the_head": (reset_before_head, 502, "upstream_disconnected", True),
    "reset_mid_stream": (reset_mid_stream, 200, "upstream_disconnected", True),
    "body_shorter_than_content_length_then_reset": (
        shorter_then_reset,
        200,
        "upstream_disconnected",
        True,
    ),
    # the announced 13 bytes are the answer: logged whole and clean; what follows is dropped
    # with the connection (test_proxy_hostile_upstream.py)
    "body_longer_than_content_length": (longer_than_announced, 200, None, False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_misbehaving_provider_is_logged_with_its_error_and_counted(
    tmp_path: Path, case: str
) -> None:
    behaviour, status, error, counted = CASES[case]
    request_id = str(uuid.uuid4())
    with RawUpstream(behaviour) as upstream:
        settings = Settings(data_dir=tmp_path / "data", proxy_port=0, openai_base_url=upstream.url)
        with ThreadedProxy(settings) as proxy:
            headers = {"authorization": "Bearer sk-x", "helicone-request-id": request_id}
            try:
                reply = httpx.post(
                    proxy.url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=10
                )
                answered: int | str = reply.status_code
            except httpx.HTTPError as exc:  # cut after the head: the client sees the cut
                answered = type(exc).__name__
            record = wait_for(
                lambda: published_records(settings).get(request_id), timeout_s=10, what="record"
            )
            assert (record["status"], record.get("error")) == (status, error), record
            assert proxy.metrics.upstream_errors == (1 if counted else 0)
    if status == 502:
        assert answered == 502
    elif error is None:
        assert answered == 200
        assert record["response_body"]["size"] == len(b'{"answer":42}')
    else:
        assert answered in ("RemoteProtocolError", "ReadError"), answered
