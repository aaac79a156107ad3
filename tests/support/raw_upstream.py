"""A provider the test writes byte by byte: for interim replies, lies about lengths, early closes.

``RawUpstream`` listens on a loopback address (IPv4 or IPv6) and runs the test's ``handler``
coroutine for every accepted connection on an asyncio loop of its own, in a background thread.
The handler gets a ``RawConnection``: ``read_request`` reads one request (head and a
``content-length`` body) and everything else is plain writes. What each connection received and
whether the peer closed it is kept for the test to inspect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class RawRequest:
    head: bytes
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass
class RawConnection:
    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[RawRequest] = field(default_factory=list)
    peer_closed: bool = False
    """The proxy closed its end (seen as EOF when reading)."""

    async def read_request(self) -> RawRequest | None:
        """The next request on this connection; None once the peer closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.peer_closed = True
            return None
        request = RawRequest(head, b"")
        length = request.header(b"content-length")
        if length:
            request.body = await self.reader.readexactly(int(length))
        self.requests.append(request)
        return request

    async def wait_closed_by_peer(self) -> None:
        """Read until EOF: anything the proxy sends here is a second request, recorded."""
        while await self.read_request() is not None:
            pass

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        """Drop the connection with a TCP reset (an abnormal end), not an orderly close."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[RawConnection], Awaitable[None]]


class RawUpstream:
    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.port = 0
        self.connections: list[RawConnection] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def call(self, coro: Awaitable[None], timeout_s: float = 10.0) -> None:
        """Run ``coro`` on the upstream's loop (e.g. an unsolicited write) and wait for it."""

        async def run() -> None:
            await coro

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout_s)

    def start(self) -> RawUpstream:
        self._thread.start()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, self.host, 0, family=family), self._loop
        )
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RawConnection(len(self.connections), reader, writer)
        self.connections.append(conn)
        try:
            await self.handler(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            conn.peer_closed = True
        finally:
            writer.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for conn in self.connections:
                conn.writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> RawUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def response(body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    """A complete JSON response with an honest ``content-length``."""
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status,
        len(body),
        extra,
        body,
    )
