"""Canned replies: the mock upstream sends exactly the bytes a test queued."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from llmtap.testing.mock_canned import event_frames
from llmtap.testing.mock_upstream import MockUpstream

SSE_CRLF = b': keep-alive\r\n\r\ndata: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\ndata: [DONE]\r\n\r\n'


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream
    assert upstream.internal_errors == 0


def raw_exchange(mock: MockUpstream, path: str) -> bytes:
    """Send one request and read until the server closes (``connection: close``)."""
    with socket.create_connection((mock.host, mock.port), timeout=5) as sock:
        sock.sendall(b"POST %b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n" % path.encode())
        received = b""
        while data := sock.recv(65536):
            received += data
        return received


def dechunk(raw: bytes) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, and whether it had its terminator."""
    chunks = []
    while raw:
        size_line, _, raw = raw.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks, True
        chunks.append(raw[:size])
        raw = raw[size + 2 :]
    return chunks, False


def test_json_reply_is_sent_exactly_with_only_its_length_added(mock: MockUpstream) -> None:
    body = b'{"error":{"type":"overloaded_error"}}'
    mock.enqueue_reply(529, {"content-type": "application/json", "x-trace": "t1"}, body)
    assert mock.pending_replies == 1

    raw = raw_exchange(mock, "/v1/messages")

    head, _, got = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 529 Mock",
        b"content-length: %d" % len(body),
        b"content-type: application/json",
        b"x-trace: t1",
        b"connection: close",
    ]
    assert got == body
    assert mock.pending_replies == 0


def test_event_stream_goes_one_chunk_per_event_bytes_untouched(mock: MockUpstream) -> None:
    mock.enqueue_reply(200, {"content-type": "text/event-stream"}, SSE_CRLF)

    head, _, rest = raw_exchange(mock, "/v1/chat/completions").partition(b"\r\n\r\n")

    assert b"transfer-encoding: chunked" in head.split(b"\r\n")
    chunks, ended = dechunk(rest)
    assert ended
    assert chunks == event_frames(SSE_CRLF)
    assert len(chunks) == 4
    assert b"".join(chunks) == SSE_CRLF


def test_event_frames_split_after_any_blank_line_and_keep_a_tail() -> None:
    body = b"data: 1\n\ndata: 2\r\n\r\ndata: 3\r\rdata: {half"
    assert event_frames(body) == [
        b"data: 1\n\n",
        b"data: 2\r\n\r\n",
        b"data: 3\r\r",
        b"data: {half",
    ]


def test_replies_are_taken_in_order_by_path_and_skip_auth(mock: MockUpstream) -> None:
    mock.enqueue_reply(200, {"content-type": "application/json"}, b'{"n":1}', path="/v1/messages")
    mock.enqueue_reply(200, {"content-type": "application/json"}, b'{"n":2}', path="/v1/messages")
    with httpx.Client(base_url=mock.url, timeout=5) as http:
        # no API key: the mock's own answer to another path is a 401, the canned ones are not
        assert http.post("/v1/chat/completions", json={}).status_code == 401
        assert http.post("/v1/messages", json={}).json() == {"n": 1}
        assert http.post("/v1/messages", json={}).json() == {"n": 2}
        assert http.post("/v1/messages", json={}).status_code == 401


def test_dropped_stream_ends_without_terminator(mock: MockUpstream) -> None:
    cut = b'data: {"a":1}\n\ndata: {"b":'
    mock.enqueue_reply(200, {"content-type": "text/event-stream"}, cut, ending="drop")

    rest = raw_exchange(mock, "/v1/chat/completions").partition(b"\r\n\r\n")[2]

    chunks, ended = dechunk(rest)
    assert not ended
    assert b"".join(chunks) == cut
    with httpx.Client(base_url=mock.url, timeout=5) as http:
        mock.enqueue_reply(200, {"content-type": "text/event-stream"}, cut, ending="drop")
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v1/chat/completions", json={})


def test_held_stream_stays_open_after_its_bytes(mock: MockUpstream) -> None:
    sent = b'data: {"a":1}\n\ndata: {"b":'
    mock.enqueue_reply(200, {"content-type": "text/event-stream"}, sent, ending="hold")
    with socket.create_connection((mock.host, mock.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\r\n")
        received = b""
        while not received.endswith(b'data: {"b":\r\n'):
            data = sock.recv(65536)
            assert data, "the mock closed a held stream"
            received += data
        # everything was sent; the body is still open: nothing more comes, the socket stays up
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
    chunks, ended = dechunk(received.partition(b"\r\n\r\n")[2])
    assert (b"".join(chunks), ended) == (sent, False)


def test_ending_other_than_complete_needs_chunks(mock: MockUpstream) -> None:
    with pytest.raises(ValueError, match="chunked"):
        mock.enqueue_reply(200, {"content-type": "application/json"}, b"{}", ending="drop")
    assert mock.pending_replies == 0


def test_clear_forgets_pending_replies(mock: MockUpstream) -> None:
    mock.enqueue_reply(200, {}, b"x")
    mock.clear()
    assert mock.pending_replies == 0
