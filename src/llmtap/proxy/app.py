"""The proxy application: what happens to a complete request, and to a finished exchange.

``dispatch`` does the only work the client waits for: read llmtap's headers, route, (for
streamed OpenAI chat calls) ask for usage, and write the request upstream. ``finish`` hands the
exchange to the shipper after its last byte was written. Anything of llmtap's own that fails on
the way (header parsing, usage injection, the hand-off) is logged, counted in
``llmtap_proxy_internal_errors_total`` and skipped: the call itself always goes through
(docs/architecture.md, invariant 1).

The app keeps the promises ``ConnectionHost`` and ``ExchangeHost`` of ``llmtap.proxy.types`` and
holds the provider pool and the client connections only as ``Pool`` and ``SweptConnection``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Protocol

from llmtap.capture.tap import HOP_BY_HOP, RequestIds, TapHeaders, split_headers
from llmtap.proxy.auth_gate import AuthGate
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.gateway.pipeline import Gateway
from llmtap.proxy.limits import ClientLimits
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.routing import RouteError, Router
from llmtap.proxy.stream_usage import UsageChunkFilter, inject_include_usage
from llmtap.proxy.types import Pool, SweptConnection
from llmtap.settings import Settings

log = logging.getLogger("llmtap.proxy")


class ExchangeSink(Protocol):
    """Takes finished exchanges off the loop (the shipper); must never block."""

    def submit(self, exchange: Exchange) -> None: ...


class ProxyApp:
    def __init__(
        self,
        settings: Settings,
        router: Router,
        pool: Pool,
        sink: ExchangeSink,
        metrics: ProxyMetrics,
        auth_gate: AuthGate | None = None,
        gateway: Gateway | None = None,
    ) -> None:
        self.auth_gate = auth_gate
        self.gateway = gateway
        self.router = router
        self.pool = pool
        self.sink = sink
        self.metrics = metrics
        self.limits = ClientLimits.from_settings(settings)
        self.max_capture = settings.max_capture_bytes
        self.inject_usage = settings.inject_stream_usage
        self._idle_timeout_ns = int(settings.idle_timeout_s * 1e9)
        self._total_timeout_ns = int(settings.total_timeout_s * 1e9)
        self._request_ids = RequestIds()
        self.active: set[Exchange] = set()
        self.connections: set[SweptConnection] = set()
        self.draining = False
        self._idle: asyncio.Event | None = None

    @property
    def calls_in_flight(self) -> int:
        return len(self.active)

    def drain(self) -> None:
        """Shutdown begins: idle keep-alive connections close now, busy ones after their answer."""
        self.draining = True
        for connection in list(self.connections):
            if connection.current is None:
                connection.close()

    async def wait_idle(self) -> None:
        """Return once no call is in flight (used by graceful shutdown)."""
        while self.active:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def _done(self, exchange: Exchange) -> None:
        self.active.discard(exchange)
        if not self.active and self._idle is not None:
            self._idle.set()

    def dispatch(self, exchange: Exchange) -> None:
        self.metrics.requests += 1
        self.active.add(exchange)
        if exchange.url.startswith(b"/_llmtap/"):
            self._internal(exchange)
            return
        try:
            forward, tap = split_headers(exchange.request_headers, self._request_ids)
        except Exception:  # noqa: BLE001 -- fail-open edge: never let header parsing stop the call
            self._internal_error("header parsing")
            forward = [(n, v) for n, v in exchange.request_headers if n.lower() not in HOP_BY_HOP]
            tap = TapHeaders(request_id=str(uuid.uuid4()))
        exchange.tap = tap
        try:
            upstream, path = self.router.route(exchange.url, tap, exchange.request_headers)
        except RouteError as exc:
            self.metrics.refused += 1
            exchange.respond_error(exc.status, exc.code, exc.message)
            return
        exchange.upstream = upstream
        exchange.upstream_path = path
        # after routing, so the 401 is in the provider's error shape
        gate = self.auth_gate
        if tap.auth is not None and gate is not None and gate.refuses(exchange, tap.auth):
            return
        body = exchange.request_body
        if self.inject_usage and tap.stream_usage is not False and upstream.provider != "anthropic":
            body = self._with_stream_usage(exchange, path, body)
        head = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (exchange.method, path, upstream.host_header)]
        injected = exchange.usage_filter is not None
        for name, value in forward:
            if injected and name.lower() == b"accept-encoding":
                continue  # the usage chunk must be visible to be removed: ask for identity
            head.append(b"%s: %s\r\n" % (name, value))
        if injected:
            head.append(b"accept-encoding: identity\r\n")
        if body or exchange.method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
            head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"\r\n")
        head.append(body)
        exchange.request_bytes = b"".join(head)
        gateway = self.gateway
        if gateway is not None and gateway.wants(exchange):
            gateway.run(exchange)
            return
        self.pool.send(exchange)

    def reject(self, exchange: Exchange, status: int, code: str, message: str) -> None:
        """Answer a request llmtap refuses before routing (e.g. too large); still logged."""
        self.metrics.requests += 1
        self.metrics.refused += 1
        self.active.add(exchange)
        try:
            _, exchange.tap = split_headers(exchange.request_headers, self._request_ids)
        except Exception:  # noqa: BLE001 -- fail-open edge
            self._internal_error("header parsing")
            exchange.tap = TapHeaders(request_id=str(uuid.uuid4()))
        exchange.respond_error(status, code, message)

    def finish(self, exchange: Exchange) -> None:
        """The client has every byte it will get: now (and only now) logging work may start."""
        self._done(exchange)
        if exchange.error is not None:
            if exchange.error == "client_disconnected":
                self.metrics.client_disconnects += 1
            elif exchange.error.startswith("upstream"):
                self.metrics.upstream_errors += 1
        if exchange.tap is None:
            return  # internal endpoint
        hook = exchange.finish_hook
        if hook is not None:
            try:
                hook(exchange)
            except Exception:  # noqa: BLE001 -- fail-open edge: a gateway step's after-work
                self._internal_error("a gateway step after the call")
        if exchange.cache is not None and self.gateway is not None:
            try:
                self.gateway.finished(exchange)
            except Exception:  # noqa: BLE001 -- fail-open edge: saving must not touch the log
                self._internal_error("the gateway's after-call work")
        try:
            self.sink.submit(exchange)
        except Exception:  # noqa: BLE001 -- fail-open edge: a broken shipper must not touch the call
            self._internal_error("handing the exchange to the shipper")

    def sweep(self) -> None:
        """Time out exchanges that waited too long on the provider, and client connections whose
        request head, body or next request is overdue (called every second)."""
        now = time.perf_counter_ns()
        for exchange in list(self.active):
            if now - exchange.t0_ns > self._total_timeout_ns:
                self._time_out(exchange, "upstream_total_timeout", "the call took longer than")
            elif now - exchange.last_activity_ns > self._idle_timeout_ns:
                self._time_out(exchange, "upstream_idle_timeout", "the provider sent nothing for")
        overdue = [
            c
            for c in self.connections
            if c.deadline_ns and c.deadline_ns < now and c.current is None
        ]
        for connection in overdue:
            connection.time_out()

    def _time_out(self, exchange: Exchange, code: str, what: str) -> None:
        conn = exchange.conn
        if conn is not None:
            conn.abort()
        limit = (
            self._total_timeout_ns if code == "upstream_total_timeout" else self._idle_timeout_ns
        )
        exchange.fail(504, code, f"{what} {limit / 1e9:g}s")

    def _with_stream_usage(self, exchange: Exchange, path: bytes, body: bytes) -> bytes:
        if exchange.method != b"POST" or b"/chat/completions" not in path:
            return body
        try:
            injected = inject_include_usage(body)
        except Exception:  # noqa: BLE001 -- fail-open edge: a body we cannot rewrite goes as it came
            self._internal_error("stream usage injection")
            return body
        if injected is None:
            return body
        exchange.usage_filter = UsageChunkFilter()
        return injected

    def _internal(self, exchange: Exchange) -> None:
        path = exchange.url.split(b"?", 1)[0]
        if path == b"/_llmtap/health":
            body, ctype, status = b'{"status":"ok"}', b"application/json", 200
        elif path == b"/_llmtap/metrics":
            body, ctype, status = self.metrics.render(), b"text/plain; version=0.0.4", 200
        else:
            body, ctype, status = b'{"error":"not found"}', b"application/json", 404
        reason = b"OK" if status == 200 else b"Not Found"
        exchange.client.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason, ctype, len(body), body)
        )
        exchange.finished = True
        self._done(exchange)
        exchange.client.exchange_done(not exchange.client_closes)

    def _internal_error(self, where: str) -> None:
        self.metrics.internal_errors += 1
        log.exception("llmtap internal error in %s (the call still went through)", where)


class Sweeper:
    """Calls ``ProxyApp.sweep`` every second on the loop until cancelled."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app: ProxyApp) -> None:
        self._loop = loop
        self._app = app
        self._handle = loop.call_later(1.0, self._tick)

    def _tick(self) -> None:
        self._app.sweep()
        self._handle = self._loop.call_later(1.0, self._tick)

    def cancel(self) -> None:
        self._handle.cancel()
