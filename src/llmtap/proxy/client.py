"""The client side of the proxy: one ``asyncio.Protocol`` per client connection.

httptools parses the request; a complete request becomes an ``Exchange`` handed to the app.
Requests on one connection are answered in order (HTTP/1.1 pipelining): while one is in flight,
later ones wait and reading from the socket pauses.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools

from llmtap.proxy.errors import error_response
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.headers import HeaderList

if TYPE_CHECKING:
    from llmtap.proxy.app import ProxyApp


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_headers",
        "_paused",
        "_start_unix_ms",
        "_t0_ns",
        "_too_large",
        "_url",
        "app",
        "closed",
        "current",
        "parser",
        "pending",
        "transport",
    )

    def __init__(self, app: ProxyApp) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.current: Exchange | None = None
        self.pending: deque[Exchange] = deque()
        self.closed = False
        self._paused = False
        self._url = b""
        self._headers: HeaderList = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        self._t0_ns = 0
        self._start_unix_ms = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.app.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "upgrade_not_supported", "protocol upgrades are not proxied")
        except httptools.HttpParserError as exc:
            self._reject(400, "malformed_request", f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        self.pending.clear()
        if self.current is not None:
            self.current.client_gone()

    def pause_writing(self) -> None:
        conn = self.current.conn if self.current is not None else None
        if conn is not None:
            conn.pause_reading()

    def resume_writing(self) -> None:
        conn = self.current.conn if self.current is not None else None
        if conn is not None:
            conn.resume_reading()

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._t0_ns = time.perf_counter_ns()
        self._start_unix_ms = time.time() * 1000.0
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        expects_continue = False
        for name, value in self._headers:  # one pass: this runs for every request
            lower = name.lower()
            if lower == b"content-length":
                if value.isdigit() and int(value) > self.app.max_body:
                    self._too_large = True
            elif lower == b"expect":
                expects_continue = value.lower() == b"100-continue"
        if expects_continue and not self._too_large:
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body_size += len(body)
        if self._body_size > self.app.max_body:
            self._too_large = True
            self._body = []
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        exchange = Exchange(
            self.app,
            self,
            parser.get_method(),
            self._url,
            self._headers,
            body,
            self._t0_ns,
            self._start_unix_ms,
            # httptools reads Connection: and the HTTP version for us
            client_closes=self.app.draining or not parser.should_keep_alive(),
        )
        too_large, self._body = self._too_large, []
        if self.current is None:
            self._start(exchange, too_large)
        else:
            # pipelined: answer in order; stop reading until the backlog is served
            if too_large:
                exchange.client_closes = True
            self.pending.append(exchange)
            if not self._paused and self.transport is not None:
                self.transport.pause_reading()
                self._paused = True

    # -- used by the exchange ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def exchange_done(self, keep_alive: bool) -> None:
        self.current = None
        if self.closed or self.transport is None:
            return
        if not keep_alive or self.app.draining:
            self.close()
            return
        if self.pending:
            self._start(self.pending.popleft(), False)
        elif self._paused:
            self._paused = False
            self.transport.resume_reading()

    def _start(self, exchange: Exchange, too_large: bool) -> None:
        self.current = exchange
        if too_large:
            exchange.client_closes = True
            self.app.reject(
                exchange,
                413,
                "request_too_large",
                f"request body is larger than {self.app.max_body} bytes "
                "(LLMTAP_MAX_REQUEST_BODY_BYTES)",
            )
        else:
            self.app.dispatch(exchange)

    def _reject(self, status: int, code: str, message: str) -> None:
        if self.transport is None or self.closed:
            return
        response, _ = error_response("openai", status, code, message, "", close=True)
        self.transport.write(response)
        self.closed = True
        self.transport.close()
