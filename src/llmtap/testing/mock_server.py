"""The mock upstream's HTTP/1.1 server: a plain ``asyncio.Protocol`` over ``httptools``.

Replies are decided synchronously as each request completes and written in request order, so
pipelined requests are safe. A reply with no latency and no chunk delay is written at once; any
other reply (and everything queued behind it) goes through one writer task per connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from http import HTTPStatus
from typing import cast

import httptools

from llmtap.testing.mock_app import MockApp
from llmtap.testing.mock_http import ReceivedRequest, Reply
from llmtap.testing.sse import CHUNKED_END, chunk

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %b\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n"
    b"connection: close\r\n\r\nBad Request"
)


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Mock\r\n" % status


def _head(reply: Reply, keep_alive: bool, chunked: bool) -> bytes:
    lines = [_status_line(reply.status)]
    if not reply.exact:  # a canned reply's headers are all of them
        lines.append(b"content-type: %b\r\n" % reply.content_type)
        if reply.frames is not None:
            lines.append(b"cache-control: no-cache\r\n")
    if reply.frames is None:
        lines.append(b"content-length: %d\r\n" % len(reply.body))
    elif chunked:
        lines.append(b"transfer-encoding: chunked\r\n")
    lines.append(reply.headers)
    lines.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
    return b"".join(lines)


class _Connection(asyncio.Protocol):
    def __init__(self, app: MockApp, connections: set[_Connection], stats: ServerStats) -> None:
        self._app = app
        self._connections = connections
        self._stats = stats
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._queue: deque[tuple[Reply, bool, bool]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._closing = False

    # -- transport events --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)
        self._stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._connections.discard(self)
        self._writable.set()
        if self._writer is not None:
            self._writer.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._reject()

    @property
    def writer(self) -> asyncio.Task[None] | None:
        return self._writer

    def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    # -- parser callbacks (called by httptools, in order) ------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._closing:
            return
        target = self._url.decode("latin-1")
        path, _, query = target.partition("?")
        request = ReceivedRequest(
            method=self._parser.get_method().decode("latin-1"),
            path=path,
            query=query,
            headers=self._headers,
            body=b"".join(self._body),
        )
        reply = self._app.handle(request)
        # HTTP/1.0 has no chunked encoding: a stream is delimited by closing the connection
        chunked = self._parser.get_http_version() != "1.0"
        keep_alive = self._parser.should_keep_alive() and (chunked or reply.frames is None)
        if self._writer is None and reply.immediate:
            self._write_now(reply, keep_alive, chunked)
        else:
            self._queue.append((reply, keep_alive, chunked))
            if self._writer is None:
                self._writer = asyncio.get_running_loop().create_task(self._drain_queue())

    # -- writing -------------------------------------------------------------------------------

    def _reject(self) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(_BAD_REQUEST)
        self.close()

    def _write_now(self, reply: Reply, keep_alive: bool, chunked: bool) -> None:
        transport = self._transport
        assert transport is not None
        if reply.hang_up:
            self.close()
            return
        head = _head(reply, keep_alive, chunked)
        drop = reply.drop_after
        if reply.frames is None:
            if drop is not None:
                transport.write(head + reply.body[:drop])
                self.close()
                return
            transport.write(head + reply.body)
        else:
            frames = reply.frames
            cut = len(frames) if drop is None else _cut(reply, drop)
            sent = [chunk(f) for f in frames[:cut]] if chunked else frames[:cut]
            transport.write(head + b"".join(sent))
            if drop is not None:
                self.close()
                return
            if reply.hold:
                return
            if chunked:
                transport.write(CHUNKED_END)
        if not keep_alive:
            self.close()

    async def _drain_queue(self) -> None:
        try:
            while self._queue and not self._closing:
                reply, keep_alive, chunked = self._queue.popleft()
                if reply.immediate:
                    self._write_now(reply, keep_alive, chunked)
                else:
                    await self._write_slowly(reply, keep_alive, chunked)
        finally:
            self._writer = None

    async def _write_slowly(self, reply: Reply, keep_alive: bool, chunked: bool) -> None:
        transport = self._transport
        assert transport is not None
        if reply.latency_s > 0:
            await asyncio.sleep(reply.latency_s)
        if reply.frames is None or reply.chunk_delay_s <= 0:
            self._write_now(reply, keep_alive, chunked)
            return
        frames = reply.frames
        cut = len(frames) if reply.drop_after is None else _cut(reply, reply.drop_after)
        transport.write(_head(reply, keep_alive, chunked))
        for index, frame in enumerate(frames):
            if index == cut:
                self.close()
                return
            if reply.content_start <= index < reply.content_end:
                await asyncio.sleep(reply.chunk_delay_s)
            await self._writable.wait()
            if self._closing:
                return
            transport.write(chunk(frame) if chunked else frame)
        if reply.hold:
            return
        if chunked:
            transport.write(CHUNKED_END)
        if not keep_alive:
            self.close()


def _cut(reply: Reply, drop_after: int) -> int:
    """Frames written before a dropped stream is closed: all up to ``drop_after`` content deltas
    (the stream is always cut before its end, even when it has fewer deltas)."""
    return reply.content_start + min(drop_after, reply.content_end - reply.content_start)


class ServerStats:
    """What a test asks about the connections themselves (written on the server's loop)."""

    def __init__(self) -> None:
        self.connections = 0
        """Connections accepted (over TLS: completed handshakes)."""
        self.server_names: list[str | None] = []
        """The SNI name of each TLS handshake, in order (None: the client sent none)."""

    def record_sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.server_names.append(name)


def server_tls_context(cert_file: str, key_file: str, stats: ServerStats) -> ssl.SSLContext:
    """A TLS server context for the certificate chain in ``cert_file``, recording the SNI name
    each handshake carries."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = stats.record_sni
    return context


class MockServer:
    """The listening socket and its open connections, on the running event loop."""

    def __init__(
        self, app: MockApp, tls_cert_file: str | None = None, tls_key_file: str | None = None
    ) -> None:
        """With ``tls_cert_file`` (a PEM chain, leaf first) and its key, it serves HTTPS."""
        self._app = app
        self.stats = ServerStats()
        self._tls = (
            server_tls_context(tls_cert_file, tls_key_file or tls_cert_file, self.stats)
            if tls_cert_file
            else None
        )
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen and return the bound port (useful with ``port=0``)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self._app, self._connections, self.stats),
            host,
            port,
            backlog=4096,
            reuse_port=reuse_port or None,
            ssl=self._tls,
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        writers = []
        for connection in list(self._connections):
            connection.close()
            if connection.writer is not None:
                writers.append(connection.writer)
        # a writer still sleeping between chunks must finish before the loop is closed
        for writer in writers:
            writer.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
