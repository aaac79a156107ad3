"""The keep-alive pool of provider connections.

A call takes an idle connection for its origin when there is one (no task, no await: the request
is written in the same loop iteration) and opens a new one otherwise. A connection goes back to
the pool only after a complete, clean response (``UpstreamConnection`` decides); a caller-named
target is connected to only at an address that passed the private-address guard; through an
egress proxy too, the tunnel is asked for that checked address (``egress.py``).

TLS is verified (chain, host name, SNI) by the context built in ``tls.py``; a failed handshake
is answered 502 ``upstream_tls_error`` naming the reason, never retried without TLS.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time

from llmtap.outbound.egress import Egress
from llmtap.outbound.trust import describe_tls_error
from llmtap.proxy.egress import EgressError, open_tunnel
from llmtap.proxy.routing import Upstream, is_public_address
from llmtap.proxy.types import UpstreamExchange
from llmtap.proxy.upstream import OriginKey, UpstreamConnection

MAX_IDLE_PER_ORIGIN = 256
# a failing provider or proxy fails every call to it: one log line per origin and reason this often
FAILURE_LOG_EVERY_S = 10.0

log = logging.getLogger("llmtap.proxy")


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
        egress: Egress | None = None,
        drain_timeout_s: float = 1.0,
        drain_max_bytes: int = 64 * 1024,
    ) -> None:
        self._loop = loop
        self._egress = egress
        self._logged_failures: dict[tuple[str, str], float] = {}
        self.max_head_bytes = max_head_bytes
        self.drain_timeout_s = drain_timeout_s
        self.drain_max_bytes = drain_max_bytes
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
                conn = await self._open(upstream, key, await self._checked_host(upstream))
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
        except ssl.SSLError as exc:
            self._failed(exchange, upstream, "upstream_tls_error", describe_tls_error(exc))
            return
        except EgressError as exc:
            self._failed(exchange, upstream, "upstream_proxy_error", str(exc))
            return
        except OSError as exc:
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

    async def _open(self, upstream: Upstream, key: OriginKey, host: str) -> UpstreamConnection:
        """A connection to ``host`` (the checked address or the name), directly or through
        the egress proxy, with TLS when the upstream is https."""
        proxy = (
            None
            if self._egress is None
            else self._egress.proxy_for(upstream.scheme, upstream.host, upstream.port)
        )
        if proxy is None:
            _, conn = await self._loop.create_connection(
                lambda: UpstreamConnection(self, key),
                host,
                upstream.port,
                ssl=self._ssl if upstream.tls else None,
                server_hostname=upstream.host if upstream.tls else None,
            )
            return conn
        raw = await open_tunnel(self._loop, proxy, host, upstream.port, self.max_head_bytes)
        conn = UpstreamConnection(self, key)
        try:
            if upstream.tls:
                tls = await self._loop.start_tls(
                    raw, conn, self._ssl, server_hostname=upstream.host
                )
                if tls is None:
                    raise ConnectionResetError("the tunnel closed during the TLS handshake")
                conn.connection_made(tls)
            else:
                raw.set_protocol(conn)
                conn.connection_made(raw)
                raw.resume_reading()
        except BaseException:
            raw.abort()
            raise
        return conn

    def _failed(
        self, exchange: UpstreamExchange, upstream: Upstream, code: str, reason: str
    ) -> None:
        """A 502 naming the reason, and a log line (at most one per origin and reason every
        ``FAILURE_LOG_EVERY_S``)."""
        exchange.fail(502, code, f"{code}: {reason} ({upstream.origin})")
        now = time.monotonic()
        last = self._logged_failures.get((upstream.origin, reason))
        if last is None or now - last >= FAILURE_LOG_EVERY_S:
            if len(self._logged_failures) > 1000:
                self._logged_failures.clear()
            self._logged_failures[(upstream.origin, reason)] = now
            log.warning("call to %s failed: %s: %s", upstream.origin, code, reason)

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
