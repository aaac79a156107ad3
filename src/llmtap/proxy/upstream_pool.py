"""The keep-alive pool of provider connections.

A call takes an idle connection for its origin when there is one (no task, no await: the request
is written in the same loop iteration) and opens a new one otherwise. A connection goes back to
the pool only after a complete, clean response (``UpstreamConnection`` decides); a caller-named
target is connected to only at an address that passed the private-address guard.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

from llmtap.proxy.routing import Upstream, is_public_address
from llmtap.proxy.types import UpstreamExchange
from llmtap.proxy.upstream import OriginKey, UpstreamConnection

MAX_IDLE_PER_ORIGIN = 256


class RelayRefused(Exception):
    """A caller-named target resolved to a private, loopback or link-local address."""


class UpstreamPool:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ssl_context: ssl.SSLContext,
        connect_timeout_s: float,
        allow_private: bool,
        max_head_bytes: int,
    ) -> None:
        self._loop = loop
        self.max_head_bytes = max_head_bytes
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout_s
        self._allow_private = allow_private
        self._idle: dict[OriginKey, list[UpstreamConnection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, exchange: UpstreamExchange) -> None:
        """Write the exchange's request on a pooled connection, or connect first."""
        upstream = exchange.upstream
        assert upstream is not None
        key = (upstream.scheme, upstream.host, upstream.port)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            conn.pooled = False
            if not conn.closed:
                conn.start(exchange, reused=True)
                return
        self.connect(exchange)

    def connect(self, exchange: UpstreamExchange) -> None:
        """Write the exchange's request on a new connection (a retry must not take another
        idle one: it sat idle as long as the one that just failed)."""
        upstream = exchange.upstream
        assert upstream is not None
        key = (upstream.scheme, upstream.host, upstream.port)
        task = self._loop.create_task(self._connect_and_send(upstream, key, exchange))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release(self, conn: UpstreamConnection) -> None:
        """Keep a connection whose exchange completed for the next call to its origin."""
        if conn.pooled or conn.closed or conn.exchange is not None:
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) < MAX_IDLE_PER_ORIGIN:
            conn.pooled = True
            idle.append(conn)
        else:
            conn.abort()

    def idle_connections(self) -> list[UpstreamConnection]:
        """Every idle connection the pool holds, all origins (a copy, for tests)."""
        return [conn for idle in self._idle.values() for conn in idle]

    def forget(self, conn: UpstreamConnection) -> None:
        if conn.pooled:
            conn.pooled = False
            self._idle[conn.key].remove(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.pooled = False
                conn.abort()
        self._idle.clear()
        for task in self._tasks:
            task.cancel()

    async def _connect_and_send(
        self, upstream: Upstream, key: OriginKey, exchange: UpstreamExchange
    ) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._connect_timeout):
                host = await self._checked_host(upstream)
                _, conn = await self._loop.create_connection(
                    lambda: UpstreamConnection(self, key),
                    host,
                    upstream.port,
                    ssl=self._ssl if upstream.tls else None,
                    server_hostname=upstream.host if upstream.tls else None,
                )
        except TimeoutError:
            exchange.fail(
                504,
                "upstream_connect_timeout",
                f"could not connect to {upstream.origin} within {self._connect_timeout:g}s",
            )
            return
        except RelayRefused as exc:
            exchange.fail(403, "target_not_allowed", str(exc))
            return
        except (OSError, ssl.SSLError) as exc:
            exchange.fail(
                502,
                "upstream_connect_error",
                f"could not connect to {upstream.origin} after "
                f"{(time.perf_counter() - started) * 1000:.0f} ms: {exc}",
            )
            return
        if exchange.finished:  # the client left while we were connecting
            conn.abort()
            return
        conn.start(exchange, reused=False)

    async def _checked_host(self, upstream: Upstream) -> str:
        """The address to connect to; for caller-named targets, one that passed the guard."""
        if not upstream.check_address or self._allow_private:
            return upstream.host
        infos = await self._loop.getaddrinfo(upstream.host, upstream.port, type=socket.SOCK_STREAM)
        addresses = [str(info[4][0]) for info in infos]
        private = [a for a in addresses if not is_public_address(a)]
        if not addresses or private:
            raise RelayRefused(
                f"target {upstream.host!r} resolves to a private, loopback or link-local address "
                f"({', '.join(private) or 'none'}); set LLMTAP_ALLOW_PRIVATE_TARGETS=true to allow it"
            )
        return addresses[0]
