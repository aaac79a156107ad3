"""Provider connections through a corporate egress proxy: HTTP CONNECT, then TLS inside.

Which proxy, and the CONNECT request and answer check, are ``llmtap.outbound.egress`` (shared with
the delivery worker); this is the asyncio side: open the tunnel without blocking the loop.
"""

from __future__ import annotations

import asyncio
from typing import cast

from llmtap.outbound.egress import (
    EgressProxy,
    UnwritableAuthority,
    authority_of,
    connect_reply_problem,
    connect_request,
)


class EgressError(Exception):
    """The egress proxy could not be reached or refused the tunnel."""


class _ConnectReply(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT; the tunnel's own bytes are never read here."""

    def __init__(self, proxy: EgressProxy, authority: str, max_head_bytes: int) -> None:
        self._proxy = proxy
        self._authority = authority
        self._max = max_head_bytes
        self._buffer = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self._buffer += data
        problem = connect_reply_problem(self._buffer, self._max)
        if problem == "":
            return
        if problem is not None:
            self._fail(problem)
            return
        assert self.transport is not None
        self.transport.pause_reading()  # until the upstream connection takes the transport
        self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._fail("closed the connection before answering CONNECT")

    def _fail(self, what: str) -> None:
        if not self.done.done():
            self.done.set_exception(
                EgressError(f"egress proxy {self._proxy.display} {what} {self._authority}")
            )


async def open_tunnel(
    loop: asyncio.AbstractEventLoop,
    proxy: EgressProxy,
    host: str,
    port: int,
    max_head_bytes: int,
) -> asyncio.Transport:
    """A connection to ``proxy`` tunnelled to ``host:port`` (reading paused, no protocol of
    the caller's yet). ``host`` is sent as given: a name, or the address the guard checked."""
    authority = authority_of(host, port)
    try:
        request = connect_request(proxy, host, port)
    except UnwritableAuthority:
        raise EgressError(
            f"cannot ask egress proxy {proxy.display} for that address: not a plain host"
        ) from None
    try:
        transport, reply = await loop.create_connection(
            lambda: _ConnectReply(proxy, authority, max_head_bytes), proxy.host, proxy.port
        )
    except OSError as exc:
        raise EgressError(
            f"cannot reach egress proxy {proxy.display}: {exc.strerror or exc}"
        ) from None
    try:
        transport.write(request)
        await reply.done
    except BaseException:
        transport.abort()
        raise
    return transport
