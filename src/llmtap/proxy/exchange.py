"""One proxied call: the response relay to the client and the capture of what passed.

An ``Exchange`` is created when the client's request is complete. The upstream connection drives
it through ``on_response_head`` → ``on_response_body``* → ``on_response_complete`` (or
``fail``); every piece of the response is written to the client as it arrives, and only after
the last byte is written is the exchange handed to the shipper (``ProxyApp.finish``).

It holds the app and both connections only through the Protocols in ``llmtap.proxy.types``
(``ExchangeHost``, ``ClientSide``, ``UpstreamSide``) and keeps the promises stated there as
``UpstreamExchange`` and ``ClientExchange``.

The capture is plain references to the bytes that were forwarded anyway (bounded by
``max_capture_bytes``): no copies, no parsing on the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llmtap.capture.logged_head import LoggedHead
from llmtap.capture.tap import HOP_BY_HOP, HeaderList, TapHeaders
from llmtap.proxy.attempt_log import AttemptLog
from llmtap.proxy.errors import error_response
from llmtap.proxy.routing import Upstream
from llmtap.proxy.stream_end import relayed_final_event
from llmtap.proxy.stream_usage import UsageChunkFilter
from llmtap.proxy.types import ClientSide, ExchangeHost, UpstreamSide

_NO_BODY_STATUSES = frozenset({204, 304})
_CACHE_MISS_HEAD = b"helicone-cache: MISS\r\nllmtap-cache: MISS\r\n"


class Exchange:
    __slots__ = (
        "app",
        "attempt_log",
        "cache",
        "client",
        "client_chunked",
        "client_closes",
        "conn",
        "error",
        "extra_head",
        "finish_hook",
        "finished",
        "first_chunk_ns",
        "head_sent",
        "held_head",
        "last_activity_ns",
        "method",
        "notes",
        "request_body",
        "request_bytes",
        "request_headers",
        "resp_captured",
        "resp_headers",
        "resp_logged",
        "resp_parts",
        "resp_size",
        "resp_tail",
        "resp_truncated",
        "retried",
        "start_unix_ms",
        "status",
        "t0_ns",
        "t_end_ns",
        "tap",
        "upstream",
        "upstream_headers_ns",
        "upstream_path",
        "url",
        "usage_filter",
    )

    def __init__(
        self,
        app: ExchangeHost[Exchange],
        client: ClientSide,
        method: bytes,
        url: bytes,
        headers: HeaderList,
        body: bytes,
        t0_ns: int,
        start_unix_ms: float,
        client_closes: bool,
    ) -> None:
        self.app = app
        self.client = client
        self.method = method
        self.url = url
        self.request_headers = headers
        self.request_body = body
        self.t0_ns = t0_ns
        self.start_unix_ms = start_unix_ms
        self.client_closes = client_closes
        self.last_activity_ns = t0_ns
        self.tap: TapHeaders | None = None
        self.cache: str | None = None
        """``hit`` or ``miss`` once the gateway's cache took the call (None: it did not)."""
        self.upstream: Upstream | None = None
        self.upstream_path = b""
        self.request_bytes = b""
        self.conn: UpstreamSide | None = None
        self.usage_filter: UsageChunkFilter | None = None
        self.retried = False
        self.attempt_log: AttemptLog | None = None
        """Set when the call asked for retries or fallbacks (``proxy/gateway/attempts.py``)."""
        self.head_sent = False
        self.held_head = b""
        """A whole answer's head, held to go out with its first body bytes (one send, not two)."""
        self.client_chunked = False
        self.finished = False
        self.status = 0
        self.resp_headers: HeaderList = []
        self.resp_logged: LoggedHead | None = None
        """``resp_headers`` as the record logs them, when made once for many calls (a cache
        hit's, ``respond_whole``); None: the shipper reads ``resp_headers``."""
        self.resp_parts: list[bytes] = []
        self.resp_captured = 0
        self.resp_size = 0
        self.resp_truncated = False
        self.resp_tail = b""
        """Once the capture is full: the last piece relayed (what ``client_gone`` looks at)."""
        self.upstream_headers_ns = 0
        self.first_chunk_ns = 0
        self.t_end_ns = 0
        self.error: str | None = None
        self.extra_head = b""
        """Header lines the gateway adds to the answer (``name: value\r\n`` each)."""
        self.notes: dict[str, str] | None = None
        """What llmtap says about the call, for the record's ``extra`` (e.g. why a gateway
        header was ignored); None for a plain call."""
        self.finish_hook: Callable[[Exchange], None] | None = None
        """Called (on the loop, by the app) once the client has its answer: a gateway step's
        work after the call (e.g. charging a rate limit the call's cost)."""

    # -- driven by the upstream connection ----------------------------------------------------

    def on_response_head(
        self, status: int, reason: bytes, headers: HeaderList, upstream_chunked: bool
    ) -> None:
        self.upstream_headers_ns = self.last_activity_ns = time.perf_counter_ns()
        self.status = status
        self.resp_headers = headers
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        content_length: bytes | None = None
        for name, value in headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                if lower == b"content-length":
                    content_length = value
                continue
            out.append(b"%s: %s\r\n" % (name, value))
        request_id = self.tap.request_id.encode() if self.tap is not None else b""
        out.append(b"helicone-id: %s\r\nllmtap-id: %s\r\n" % (request_id, request_id))
        if self.extra_head:
            out.append(self.extra_head)
        whole = False
        if status in _NO_BODY_STATUSES or self.method == b"HEAD":
            if content_length is not None:
                out.append(b"content-length: %s\r\n" % content_length)
        elif self.usage_filter is None and not upstream_chunked and content_length is not None:
            out.append(b"content-length: %s\r\n" % content_length)
            whole = True
        else:
            self.client_chunked = True
            out.append(b"transfer-encoding: chunked\r\n")
        if self.client_closes or self.app.draining:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        self.head_sent = True
        if whole:
            # Not a stream: the head goes out with the first body bytes, which nearly always
            # came in the same read from the provider. The transport sends each write at once,
            # so this is one send to the client per answer instead of two.
            self.held_head = b"".join(out)
        else:
            self.client.write(b"".join(out))

    def on_response_body(self, data: bytes) -> None:
        if not self.first_chunk_ns:
            self.first_chunk_ns = time.perf_counter_ns()
        self.last_activity_ns = time.perf_counter_ns()
        self.resp_size += len(data)
        if not self.resp_truncated:
            room = self.app.max_capture - self.resp_captured
            if len(data) <= room:
                self.resp_parts.append(data)
                self.resp_captured += len(data)
            else:
                # keep the prefix that fits: one slice, once, at the capture limit
                if room > 0:
                    self.resp_parts.append(data[:room])
                    self.resp_captured += room
                self.resp_truncated = True
                self.resp_tail = data
        else:
            self.resp_tail = data
        if self.usage_filter is not None:
            data = self.usage_filter.feed(data)
            if not data:
                return
        if self.client_chunked:
            self.client.write(b"%x\r\n%s\r\n" % (len(data), data))
        elif self.held_head:
            head, self.held_head = self.held_head, b""
            self.client.write(head + data)
        else:
            self.client.write(data)

    def on_response_complete(self) -> None:
        if self.held_head:  # an empty body
            self._write_held_head()
        if self.usage_filter is not None:
            rest = self.usage_filter.finish()
            if rest:
                self.client.write(b"%x\r\n%s\r\n" % (len(rest), rest))
        if self.client_chunked:
            self.client.write(b"0\r\n\r\n")
        self.conn = None
        self._finish(keep_client=not self.client_closes)

    def respond_whole(
        self,
        status: int,
        reason: bytes,
        headers: HeaderList,
        head_lines: bytes,
        body: bytes,
        logged: LoggedHead | None = None,
    ) -> bool:
        """Answer at once with a whole body whose header lines are already rendered (a cache
        hit, ``proxy/gateway/cache_replay.py``): the bytes and the capture ``on_response_*``
        would give, in one write. ``head_lines`` are ``headers`` minus hop-by-hop, rendered;
        ``logged`` is ``logged_head(headers)``, made once with them.
        False (nothing done) when this call needs the piecewise path: its stream is filtered,
        it is a ``HEAD``, or the capture would cut the body."""
        if (
            self.usage_filter is not None
            or self.method == b"HEAD"
            or len(body) > self.app.max_capture
        ):
            return False
        now = time.perf_counter_ns()
        self.upstream_headers_ns = self.last_activity_ns = now
        if body:
            self.first_chunk_ns = now
        self.status = status
        self.resp_headers = headers
        self.resp_logged = logged
        request_id = self.tap.request_id.encode() if self.tap is not None else b""
        close = self.client_closes or self.app.draining
        self.head_sent = True
        self.resp_parts = [body] if body else []
        self.resp_captured = self.resp_size = len(body)
        self.client.write(
            b"HTTP/1.1 %d %s\r\n%shelicone-id: %s\r\nllmtap-id: %s\r\n%s"
            b"content-length: %d\r\n%s\r\n%s"
            % (
                status,
                reason,
                head_lines,
                request_id,
                request_id,
                self.extra_head,
                len(body),
                b"connection: close\r\n" if close else b"",
                body,
            )
        )
        self.conn = None
        self._finish(keep_client=not self.client_closes)
        return True

    def fail(self, status: int, code: str, message: str) -> None:
        """The upstream part failed: answer with a provider-shaped error, or cut the response."""
        if self.finished:
            return
        self.error = code
        self.conn = None
        if self.head_sent:
            # Mid-response: the client sees the stream end early, as it would from the provider.
            self._finish(keep_client=False)
            return
        self.respond_error(status, code, message)

    def respond_error(self, status: int, code: str, message: str) -> None:
        """Answer the client ourselves (refusals, upstream unreachable) and log the call."""
        self.error = self.error or code
        provider = self.upstream.provider if self.upstream is not None else "openai"
        request_id = self.tap.request_id if self.tap is not None else ""
        extra = self.extra_head
        if self.cache == "miss":
            # a miss answered by llmtap itself (502, 504) says so too; a relayed answer has it
            # from ``MissRelay``, and a timeout's 504 comes here past the relay
            extra += _CACHE_MISS_HEAD
        response, body = error_response(
            provider, status, code, message, request_id, self.client_closes, extra
        )
        self.status = status
        self.resp_headers = [(b"content-type", b"application/json")]
        self.resp_parts = [body] if body else []
        self.resp_captured = self.resp_size = len(body)
        self.head_sent = True
        self.client.write(response)
        self._finish(keep_client=not self.client_closes)

    def client_gone(self) -> None:
        """The client disconnected before the response was complete: stop the upstream call.

        Unless it left after the provider's final stream event was relayed to it (the
        ``openai`` SDK closes at ``data: [DONE]``, before the end of the HTTP body may have
        arrived): then it has its whole answer, the call is logged complete, and the provider
        connection reads the rest of the response alone, to be pooled if it ends in time.
        """
        if self.finished:
            return
        conn, self.conn = self.conn, None
        if conn is not None and self._client_had_the_final_event():
            conn.drain()
        else:
            self.error = "client_disconnected"
            if conn is not None:
                conn.abort()
        self._finish(keep_client=False)

    def _client_had_the_final_event(self) -> bool:
        if not self.head_sent or self.client.writing_paused:
            return False  # paused: the client was not reading what it had been sent
        if self.resp_truncated:
            return relayed_final_event([self.resp_tail], whole=False)
        return relayed_final_event(self.resp_parts, whole=True)

    def _write_held_head(self) -> None:
        head, self.held_head = self.held_head, b""
        self.client.write(head)

    def _finish(self, keep_client: bool) -> None:
        if self.held_head:
            # cut before any body byte came: the client gets the head, then the end, as it
            # would from the provider
            self._write_held_head()
        # the answer's last bytes leave before the hand-off to logging (which may wake the
        # shipper thread), not after it with the rest of the provider's read
        self.client.uncork()
        self.finished = True
        self.t_end_ns = time.perf_counter_ns()
        self.app.finish(self)
        self.client.exchange_done(keep_client)
