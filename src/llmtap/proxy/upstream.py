"""One connection to a provider: an ``asyncio.Protocol`` that reads a response into an exchange.

The pool (``upstream_pool.py``) hands it one exchange at a time (``start``). A reused connection
the provider closes before any response byte arrives (it closed while idle, just as we wrote) has
the call retried once on a fresh connection, but only a call that can be replayed: the provider
may have read the request and acted on it, and a proxy must not replay a non-idempotent one
(docs/decisions/2026-12-01-upstream-pool-attacks.md).

It drives the exchange through ``UpstreamExchange`` and sees the pool as ``ConnectionPool``
(``llmtap.proxy.types``); it imports neither.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import httptools

from llmtap.capture.tap import HeaderList
from llmtap.proxy.types import ConnectionPool, UpstreamExchange

OriginKey = tuple[str, str, int]
# RFC 9110 9.2.2; a POST is replayable only when the caller said so with an idempotency key
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
IDEMPOTENCY_HEADERS = frozenset({b"idempotency-key", b"x-idempotency-key"})


def replayable(exchange: UpstreamExchange) -> bool:
    if exchange.method in IDEMPOTENT_METHODS:
        return True
    return any(name.lower() in IDEMPOTENCY_HEADERS for name, _ in exchange.request_headers)


class UpstreamConnection(asyncio.Protocol):
    """One connection to a provider, carrying one exchange at a time.

    A response is the first one with a final status: interim (1xx) replies are read and dropped.
    The connection goes back to the pool only after a complete response, read to its last byte
    and nothing after it; any byte it sends while no exchange is waiting (the end of a body
    longer than announced, a response nobody asked for) means it can no longer be trusted to
    carry someone else's call, so it is closed.
    """

    __slots__ = (
        "_chunked",
        "_complete",
        "_drain_left",
        "_drain_timer",
        "_got_bytes",
        "_head_bytes",
        "_head_done",
        "_headers",
        "_interim",
        "_keep_alive",
        "_paused",
        "_reason",
        "_reused",
        "closed",
        "exchange",
        "key",
        "parser",
        "pool",
        "pooled",
        "transport",
    )

    def __init__(self, pool: ConnectionPool[UpstreamConnection], key: OriginKey) -> None:
        self.pool = pool
        self.key = key
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchange: UpstreamExchange | None = None
        self.closed = False
        self.pooled = False
        """In the pool's idle list (so it is never put there twice)."""
        self._headers: HeaderList = []
        self._reason = b""
        self._chunked = False
        self._got_bytes = False
        self._reused = False
        self._interim = False
        self._complete = False
        self._keep_alive = False
        self._head_done = False
        self._head_bytes = 0
        self._paused = False
        self._drain_left = -1
        """Bytes still allowed while reading a response nobody waits for (-1: not draining)."""
        self._drain_timer: asyncio.TimerHandle | None = None

    def start(self, exchange: UpstreamExchange, reused: bool) -> None:
        assert self.transport is not None
        self.exchange = exchange
        exchange.conn = self
        self._reused = reused
        self._got_bytes = False
        self._headers = []
        self._head_done = False
        self._head_bytes = 0
        if exchange.client.writing_paused:
            # the client is not reading what it already has: read nothing for it until it does
            self.pause_reading()
        self.transport.write(exchange.request_bytes)

    def abort(self) -> None:
        self.exchange = None
        self.closed = True
        self._stop_draining()
        if self.transport is not None:
            self.transport.abort()

    def drain(self) -> None:
        """The exchange is done (its client left with the final stream event): read the rest of
        this response for nobody, and pool the connection if it ends within the pool's bounds.
        Only this rare path sets a timer; it is cancelled when the response ends."""
        self.exchange = None
        if self.closed or self.transport is None:
            return
        self._drain_left = self.pool.drain_max_bytes
        self._drain_timer = asyncio.get_running_loop().call_later(
            self.pool.drain_timeout_s, self._drain_overdue
        )
        if self._paused:
            self.resume_reading()  # nobody to hold back for any more

    def _drain_overdue(self) -> None:
        self._drain_timer = None
        if self._drain_left >= 0 and not self.closed:
            self.pool.forget(self)
            self.abort()

    def _stop_draining(self) -> None:
        self._drain_left = -1
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, status: int, code: str, message: str) -> None:
        """Fail the exchange (if still ours) and drop the connection: its state is unknown."""
        exchange = self.exchange
        self.pool.forget(self)
        self.abort()
        if exchange is not None:
            exchange.fail(status, code, message)

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            self._drain_left -= len(data)
            if self._drain_left < 0:
                # Nobody asked (or a drained response went on too long): a late or unsolicited
                # response would be read as the next call's.
                self.pool.forget(self)
                self.abort()
                return
        self._got_bytes = True
        exchange = self.exchange
        client = exchange.client if exchange is not None else None
        if client is not None:
            # what this read makes the exchange write leaves in one send once it is handled
            client.cork()
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._fail(502, "upstream_protocol_error", "the provider sent an invalid HTTP response")
            return
        finally:
            if client is not None:
                client.uncork()
        if self._complete:
            self._complete = False
            transport = self.transport
            if transport is None or self.closed:
                return
            if transport.get_write_buffer_size():
                # Answered before our request was all written: the rest of it must not go out
                # ahead of the next caller's request (the provider may read it as one).
                self.abort()
            elif self._keep_alive:
                if self._paused:
                    # paused for a slow client in this very read: the next caller needs it reading
                    self.resume_reading()
                self.pool.release(self)
            else:
                self.closed = True
                transport.close()
        elif not self._head_done and self.exchange is not None:
            # Every byte of this read belonged to a response head (interim ones included).
            self._head_bytes += len(data)
            if self._head_bytes > self.pool.max_head_bytes:
                self._fail(
                    502,
                    "upstream_head_too_large",
                    f"the provider's response head is larger than {self.pool.max_head_bytes} bytes",
                )

    def eof_received(self) -> bool | None:
        # not a candidate for the next call from now on, even before connection_lost runs
        self.closed = True
        self.pool.forget(self)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_draining()
        self.pool.forget(self)
        exchange, self.exchange = self.exchange, None
        if exchange is None or exchange.finished:
            return
        if not self._got_bytes and self._reused and not exchange.retried and replayable(exchange):
            exchange.retried = True
            exchange.conn = None
            self.pool.connect(exchange)
            return
        if exc is None and exchange.head_sent and self._reading_until_close():
            # only an orderly close ends such a body: after a reset, the rest was lost
            exchange.on_response_complete()
            return
        exchange.fail(502, "upstream_disconnected", "the provider closed the connection early")

    def _reading_until_close(self) -> bool:
        """A response framed by neither length nor chunking ends when the connection closes."""
        if self._chunked:
            return False
        return not any(name.lower() == b"content-length" for name, _ in self._headers)

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.exchange is None:
            # a second response in the same read as the end of the first: never reuse this one
            self._keep_alive = False

    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                self._fail(502, "upstream_protocol_error", "the provider switched protocols (101)")
                return
            # Interim (100, 102, 103 ...): not forwarded, the final response follows on this
            # connection (docs/decisions/2026-12-01-upstream-interim-responses.md).
            if self._interim_announces_body():
                self._fail(502, "upstream_protocol_error", "the provider sent a 1xx with a body")
                return
            self._interim = True
            self._headers = []
            # a provider may send 102s to say it is still working: that is not idleness
            exchange.last_activity_ns = time.perf_counter_ns()
            return
        self._head_done = True
        self._chunked = _chunked_last(self._headers)
        exchange.on_response_head(status, self._reason, self._headers, self._chunked)
        if exchange.method == b"HEAD":
            self._end_at_head(exchange)

    def _end_at_head(self, exchange: UpstreamExchange) -> None:
        """A HEAD response has no body whatever its length headers say. httptools cannot be
        told to skip it, so the exchange ends here and the connection is closed: whatever
        follows on it could not be framed (docs/decisions/2026-12-01-head-requests.md)."""
        self.exchange = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        exchange.on_response_complete()

    def _interim_announces_body(self) -> bool:
        """A 1xx ends at its head, but llhttp would read a body a 199 announces and hand it to
        us as body bytes, which would reach the client ahead of the real answer's head."""
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"transfer-encoding" or (
                lower == b"content-length" and value.strip(b" \t0")
            ):
                return True
        return False

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            if self._drain_left >= 0:
                # the end of a response whose client had left with all it needed
                self._stop_draining()
                self._complete = True
                self._keep_alive = self.parser.should_keep_alive()
            return
        # released (or closed) by data_received once this read is parsed to its end
        self._complete = True
        self._keep_alive = self.parser.should_keep_alive()
        exchange.on_response_complete()


def _chunked_last(headers: HeaderList) -> bool:
    """Whether llhttp reads the body as chunked: only when ``chunked`` is the final coding of
    all the ``Transfer-Encoding`` fields together; any other is read until the connection
    closes, and the proxy must frame it the same way."""
    final = b""
    for name, value in headers:
        # the length first: this runs for every response, over every header
        if len(name) == 17 and name.lower() == b"transfer-encoding":
            final = value.rsplit(b",", 1)[-1].strip(b" \t").lower()
    return final == b"chunked"
