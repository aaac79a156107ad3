"""The client side of the proxy: one ``asyncio.Protocol`` per client connection.

httptools parses the request; a complete request becomes an ``Exchange`` handed to the app.
Requests on one connection are answered in order (HTTP/1.1 pipelining): while one is in flight,
later ones wait and reading from the socket pauses. Nothing is ever written for a request before
the answer to the one ahead of it is complete (refusals and ``100 Continue`` included).

Limits on what a client may make the proxy hold (``limits.ClientLimits``, which also words the
answers) are checked with arithmetic in callbacks that run anyway: the request head (line +
headers, and chunked trailers) is bounded by ``max_request_head_bytes`` and
``max_request_headers`` (431); a head must arrive within ``header_read_timeout_s``, its body
within ``body_read_timeout_s`` of the head (408), and an idle keep-alive connection is closed
after ``keepalive_timeout_s``. The deadlines are one number per connection, checked by the app's
once-a-second sweep: no timer per request.

The connection sees the app as ``ConnectionHost`` and keeps the promises ``ClientSide`` (to its
exchanges) and ``SweptConnection`` (to the app) of ``llmtap.proxy.types``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast

import httptools

from llmtap.capture.tap import HeaderList
from llmtap.proxy.errors import error_response, provider_for_path
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.limits import Refusal
from llmtap.proxy.types import ClientExchange, ConnectionHost

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEADER_FRAMING = 4
"""``: `` and CRLF around each header field: counted so the limit is close to bytes on the wire."""
_REQUEST_LINE_FRAMING = len(b"POST  HTTP/1.1\r\n\r\n")
"""The request line around its target, and the blank line ending the head."""
_SLASH = 0x2F

# parser phases
_BETWEEN = 0
_HEAD = 1
_BODY = 2


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request llmtap has just refused."""


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_continue_owed",
        "_corked",
        "_head_bytes",
        "_headers",
        "_idle",
        "_limits",
        "_max_head",
        "_max_headers",
        "_paused",
        "_phase",
        "_progress",
        "_refusal",
        "_refuse_as",
        "_stalled",
        "_start_unix_ms",
        "_t0_ns",
        "_too_large",
        "_url",
        "app",
        "closed",
        "current",
        "deadline_ns",
        "parser",
        "pending",
        "transport",
        "writing_paused",
    )

    def __init__(self, app: ConnectionHost[Exchange]) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.current: ClientExchange | None = None
        self.pending: deque[tuple[Exchange, Refusal | None]] = deque()
        self.closed = False
        self.deadline_ns = 0
        """When the sweep closes this connection (0: never): a head or a next request is due."""
        self._paused = False
        self.writing_paused = False
        """The transport said its buffer is over the limit (it says so once per crossing): a
        provider connection that starts meanwhile must start paused."""
        self._url = b""
        self._headers: HeaderList = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        self._refuse_as: Refusal | None = None
        self._t0_ns = 0
        self._start_unix_ms = 0.0
        self._phase = _BETWEEN
        self._head_bytes = 0
        self._stalled = 0
        self._progress = False
        self._idle = False
        self._continue_owed = False
        self._refusal: bytes | None = None
        self._corked: list[bytes] | None = None
        """While a provider read is handled (``cork``): what it writes, sent at once after."""
        self._limits = limits = app.limits
        self._max_head = limits.max_head
        self._max_headers = limits.max_headers

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.app.connections.add(self)
        # the first head is due a timeout after connecting, however slowly its bytes come
        self.deadline_ns = time.perf_counter_ns() + self._limits.head_timeout_ns

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused, waiting to answer after the response in flight: read nothing more
        self._progress = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._refuse_as != "upgrade":  # else: answered in turn as an exchange, then closed
                self.app.metrics.rejected_malformed += 1
                self._refuse(*self._limits.refusal("upgrade"))
            return
        except httptools.HttpParserError as exc:
            if self._refusal is None and not self.closed:  # else: a callback refused (_Refused)
                self.app.metrics.rejected_malformed += 1
                self._refuse(400, "malformed_request", f"malformed HTTP request: {exc}")
            return
        if self._progress:
            self._stalled = 0
        else:
            # None of our callbacks ran: httptools kept every byte in its own buffer of one
            # header field (it hands a field over only whole), so count those bytes here.
            self._stalled += len(data)
            if self._stalled > self._max_head:
                self._head_too_large()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline_ns = 0
        self.app.connections.discard(self)
        self.pending.clear()
        if self.current is not None:
            self.current.client_gone()

    def pause_writing(self) -> None:
        self.writing_paused = True
        conn = self.current.conn if self.current is not None else None
        if conn is not None:
            conn.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        conn = self.current.conn if self.current is not None else None
        if conn is not None:
            conn.resume_reading()

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._t0_ns = t0 = time.perf_counter_ns()
        self._start_unix_ms = time.time() * 1000.0
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0
        self._too_large = False
        self._refuse_as = None
        self._phase = _HEAD
        self._head_bytes = _REQUEST_LINE_FRAMING
        self._progress = True
        if self._idle or not self.deadline_ns:
            # a keep-alive or pipelined request: its head is due a timeout after its first byte
            self._idle = False
            self.deadline_ns = t0 + self._limits.head_timeout_ns

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._progress = True
        self._head_bytes += len(url)
        if self._head_bytes > self._max_head:
            self._head_too_large()
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        self._head_bytes += len(name) + len(value) + _HEADER_FRAMING
        if self._phase == _HEAD:
            if self._head_bytes > self._max_head or len(self._headers) >= self._max_headers:
                self._head_too_large()
                raise _Refused
            self._headers.append((name, value))
        elif self._head_bytes > self._max_head:
            self._head_too_large()
            raise _Refused
        # else: a chunked trailer, dropped: it would reach the provider and be read as a
        # Helicone-* control behind the back of a front proxy that filtered the headers.

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._progress = True
        # the body is due within its own timeout, however slowly its bytes come
        self.deadline_ns = time.perf_counter_ns() + self._limits.body_timeout_ns
        url = self._url
        if not url or url[0] != _SLASH:
            self._refuse_as = "bad_target"  # absolute-form, authority-form, "*": origin-form only
        expects_continue = upgrade = False
        for name, value in self._headers:  # one pass: this runs for every request
            lower = name.lower()
            if lower == b"content-length":
                if value.isdigit() and int(value) > self._limits.max_body:
                    self._too_large = True
            elif lower == b"expect":
                expects_continue = value.lower() == b"100-continue"
            elif lower == b"upgrade":
                upgrade = True
        if self._too_large and self.current is None:
            # the declared body is over the limit: answer now instead of reading (and dropping)
            # all of it first; a client that sent Expect: 100-continue is waiting for this
            self._phase = _BETWEEN
            self._start(self._exchange(b"", client_closes=True), "too_large")
            raise _Refused
        if upgrade and self.parser.should_upgrade():
            # httptools completes the message, then stops: answer it in turn like any refusal
            self._refuse_as = "upgrade"
        if expects_continue and not self._too_large and self._refuse_as is None:
            if self.current is None:
                self.write(CONTINUE)
            else:
                self._continue_owed = True  # sent when the answer ahead of it is complete

    def on_body(self, body: bytes) -> None:
        self._progress = True
        if self._too_large:
            return
        self._body_size += len(body)
        if self._body_size > self._limits.max_body:
            self._too_large = True
            self._body = []
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._phase = _BETWEEN
        self._progress = True
        self.deadline_ns = 0
        self._continue_owed = False  # the body came without it: no 100 is due any more
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        # httptools reads Connection: and the HTTP version for us
        exchange = self._exchange(body, self.app.draining or not self.parser.should_keep_alive())
        refusal: Refusal | None = "too_large" if self._too_large else self._refuse_as
        self._body = []
        if self.current is None:
            self._start(exchange, refusal)
        elif len(self.pending) >= self._limits.max_pipelined:
            # one read can hold thousands of small requests: each would be an exchange held
            self.app.metrics.rejected_pipelined += 1
            self._refuse(*self._limits.refusal("pipelined"))
            raise _Refused
        else:
            # pipelined: answer in order; stop reading until the backlog is served
            self.pending.append((exchange, refusal))
            self._pause()

    def _exchange(self, body: bytes, client_closes: bool) -> Exchange:
        return Exchange(
            self.app,
            self,
            self.parser.get_method(),
            self._url,
            self._headers,
            body,
            self._t0_ns,
            self._start_unix_ms,
            client_closes=client_closes,
        )

    # -- used by the exchange and the app ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        corked = self._corked
        if corked is not None:
            corked.append(data)
        elif not self.closed and self.transport is not None:
            self.transport.write(data)

    def cork(self) -> None:
        # With one call in flight nothing else waits for the loop: each piece goes at once, the
        # first token earliest. With more, one send per provider read (not one per stream
        # event) leaves the loop to the others sooner (docs/decisions/2026-12-02-stream-relay.md).
        if self._corked is None and self.app.calls_in_flight > 1:
            self._corked = []

    def uncork(self) -> None:
        out, self._corked = self._corked, None
        if out and not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self) -> None:
        self.uncork()
        if not self.closed and self.transport is not None:
            self.closed = True
            self.deadline_ns = 0
            self.transport.close()

    def exchange_done(self, keep_alive: bool) -> None:
        self.current = None
        if self.closed or self.transport is None:
            return
        if not keep_alive or self.app.draining:
            self.close()
            return
        if self.pending:
            self._start(*self.pending.popleft())
            return
        if self._refusal is not None:
            self._write_and_close(self._refusal)
            return
        phase = self._phase
        if phase == _BETWEEN:
            self._idle = True
            self.deadline_ns = time.perf_counter_ns() + self._limits.keepalive_timeout_ns
        elif phase == _HEAD:
            # a head began while the answer ahead of it was written: its clock starts now
            self.deadline_ns = time.perf_counter_ns() + self._limits.head_timeout_ns
        else:
            # the same for a body
            self.deadline_ns = time.perf_counter_ns() + self._limits.body_timeout_ns
        if self._continue_owed:
            self._continue_owed = False
            self.write(CONTINUE)
        if self._paused:
            self._paused = False
            self.transport.resume_reading()

    def time_out(self) -> None:
        """The deadline passed with no response in flight (called by the app's sweep)."""
        if self.closed:
            return
        if self._phase == _BODY:
            self.app.metrics.body_timeouts += 1
            self._refuse(*self._limits.refusal("body_timeout"))
            return
        if self._phase != _HEAD:
            # nothing of a request came: close quietly (a 408 here could be read by the client
            # as the answer to the request it is about to send)
            if self._idle:
                self.app.metrics.idle_timeouts += 1
            else:
                self.app.metrics.head_timeouts += 1
            self.close()
            return
        self.app.metrics.head_timeouts += 1
        self._refuse(*self._limits.refusal("head_timeout"))

    def _start(self, exchange: Exchange, refusal: Refusal | None) -> None:
        self.current = exchange
        if refusal is None:
            self.app.dispatch(exchange)
            return
        exchange.client_closes = True
        self.app.reject(exchange, *self._limits.refusal(refusal))

    def _head_too_large(self) -> None:
        self.app.metrics.rejected_head_too_large += 1
        self._refuse(*self._limits.refusal("head_too_large"))

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer a request that never became an exchange, then close the connection."""
        if self.transport is None or self.closed or self._refusal is not None:
            return
        provider = provider_for_path(self._url)
        response, _ = error_response(provider, status, code, message, "", close=True)
        if self.current is None:
            self._write_and_close(response)
        else:
            # a response is still being written: this answer goes after it (and after the
            # pipelined requests ahead of this one); nothing more is read meanwhile
            self._refusal = response
            self.deadline_ns = 0
            self._pause()

    def _write_and_close(self, response: bytes) -> None:
        self.write(response)
        self.close()

    def _pause(self) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
