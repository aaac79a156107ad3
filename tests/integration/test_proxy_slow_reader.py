"""A client that pipelines requests and does not read what it asked for, on raw sockets.

The proxy must not hold more of its answers in memory than a socket's worth: a provider
connection stops being read while the client is not reading, including one that starts for a
pipelined request after the client's write buffer went over its limit (asyncio says so only
once per crossing). And the requests queued behind the one in flight are bounded.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools
import pytest

from llmtap.proxy.client import ClientConnection
from llmtap.proxy.server import ThreadedProxy
from llmtap.proxy.upstream import UpstreamConnection
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import wait_for
from support.raw_upstream import RawConnection, RawUpstream, response

FILLER_BYTES = 60 * 1024
"""One filler answer: under one loopback segment, so it reaches the proxy in a single read."""
FILLERS = 8
STREAM_CAP = 16 * 1024 * 1024
PIECE = 64 * 1024


@dataclass
class Stream:
    written: int = 0
    done: bool = False


class SlowReaderUpstream:
    """Answers ``x-kind: filler`` with one small response and ``x-kind: stream`` with a chunked
    body of ``STREAM_CAP`` bytes, written as fast as the proxy takes it."""

    def __init__(self) -> None:
        self.streams: list[Stream] = []

    async def handle(self, conn: RawConnection) -> None:
        sock = conn.writer.get_extra_info("socket")
        # a small kernel buffer on our side: what we manage to write is what the proxy read
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        while (request := await conn.read_request()) is not None:
            if request.header(b"x-kind") == b"filler":
                await conn.send(response(b"f" * FILLER_BYTES))
                continue
            stream = Stream()
            self.streams.append(stream)
            conn.writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            piece = b"%x\r\n%s\r\n" % (PIECE, b"s" * PIECE)
            while stream.written < STREAM_CAP:
                conn.writer.write(piece)
                stream.written += PIECE
                await conn.writer.drain()
            await conn.send(b"0\r\n\r\n")
            stream.done = True


def request(kind: bytes) -> bytes:
    body = b'{"input":"x","model":"text-embedding-3-small"}'
    return (
        b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\nx-kind: %s\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (kind, len(body), body)
    )


def the_client(proxy: ThreadedProxy) -> ClientConnection:
    """The proxy's side of the test's one connection, its kernel send buffer made small (and
    so not grown by the kernel): what it cannot pass on is then in the proxy's own memory."""
    app = proxy._server.app
    assert app is not None
    wait_for(lambda: len(app.connections) == 1, what="the connection accepted")
    (client,) = list(app.connections)
    assert isinstance(client, ClientConnection)
    assert client.transport is not None
    sock = client.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    return client


def buffered_for(proxy: ThreadedProxy, client: ClientConnection) -> int:
    """Bytes the proxy holds in memory for the client (asked on the proxy's own loop)."""

    async def size() -> int:
        assert client.transport is not None
        return client.transport.get_write_buffer_size()

    return asyncio.run_coroutine_threadsafe(size(), proxy._loop).result(5)


def test_a_pipelined_stream_for_a_client_that_does_not_read_is_not_buffered(
    tmp_path: Path,
) -> None:
    upstream = SlowReaderUpstream()
    with RawUpstream(upstream.handle) as raw:
        settings = Settings(data_dir=tmp_path / "data", proxy_port=0, openai_base_url=raw.url)
        with ThreadedProxy(settings) as proxy, socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", proxy.port))
            client = the_client(proxy)
            # enough small answers to fill the kernel's buffers and go over the proxy's write
            # limit with an exchange that completes in that same read; then a stream
            sock.sendall(request(b"filler") * FILLERS + request(b"stream"))

            def held_back() -> bool:
                """On the proxy's loop, between its callbacks: the call being answered has its
                provider connection paused, and the client is still not reading."""

                async def check() -> bool:
                    current = client.current
                    conn = current.conn if current is not None else None
                    return isinstance(conn, UpstreamConnection) and conn._paused

                return asyncio.run_coroutine_threadsafe(check(), proxy._loop).result(5)

            def settled() -> bool:
                # everything read into the proxy's memory (the defect), or held back
                return bool(upstream.streams and upstream.streams[0].done) or held_back()

            wait_for(settled, timeout_s=20, what="the stream buffered, or held back")
            written = upstream.streams[0].written if upstream.streams else 0
            held = buffered_for(proxy, client)
            assert written < 2 * 1024 * 1024
            assert held < 2 * 1024 * 1024

            # once the client reads, every answer arrives whole
            sock.settimeout(20)
            received = 0
            expected_min = FILLERS * FILLER_BYTES + STREAM_CAP
            while received < expected_min:
                data = sock.recv(1 << 20)
                assert data
                received += len(data)
            wait_for(
                lambda: upstream.streams and upstream.streams[0].done,
                timeout_s=10,
                what="the stream written to its end",
            )


# -- the queue of pipelined requests ---------------------------------------------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def chat() -> bytes:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body.encode())
    )


def test_requests_pipelined_past_the_limit_are_refused_in_order_then_closed(
    tmp_path: Path, mock: MockUpstream
) -> None:
    limit = 8
    settings: Any = Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock.url,
        max_pipelined_requests=limit,
    )
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        # one send, one read at the proxy: every request is parsed before any answer exists
        sock.sendall(chat() * 40)
        answers = read_to_close(sock)
    # the one in flight and the ones queued behind it, then a refusal for the next one
    assert [status for status, _ in answers] == [200] * (1 + limit) + [429]
    assert json.loads(answers[-1][1])["error"]["code"] == "too_many_pipelined_requests"


class Answers:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[tuple[int, bytes]] = []
        self._body: list[bytes] = []

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), b"".join(self._body)))


def read_to_close(sock: socket.socket, timeout_s: float = 10.0) -> list[tuple[int, bytes]]:
    """Every response until the proxy closes the connection (which the test needs it to)."""
    answers = Answers()
    sock.settimeout(timeout_s)
    while data := sock.recv(65536):
        answers.parser.feed_data(data)
    return answers.done
