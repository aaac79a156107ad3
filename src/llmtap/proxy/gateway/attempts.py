"""One call's attempts: retries with backoff and fallbacks to other targets, on the loop.

The pool carries each attempt as an ``Attempt`` — the exchange as a provider connection sees it
(``UpstreamExchange``) — so a plain call, sent as its ``Exchange`` directly, never meets this
code. An attempt that may be followed by another holds back an answer worth retrying (or one
its fallback entry lists): the head never reaches the client, the connection is dropped with
the rest of that answer, and the next attempt is sent after its wait. Every other answer, and
every answer of the last possible attempt, is relayed as it comes. Once the client got a head,
nothing is retried: a failure after it cuts the response, as for any call.

The answer that reaches the client goes through ``AttemptRun.out``: the exchange itself, or, on a
cache miss, the cache's ``MissRelay`` (which marks it ``MISS`` and keeps what it needs to save
it). A held-back answer never reaches ``out``, so the cache can only ever save the final one.

The whole run is bounded by the call's total timeout (``total_timeout_s``): a wait that would
end past it is not taken (the answer in hand is relayed instead), and the app's once-a-second
sweep still answers 504 ``upstream_total_timeout`` if the attempts themselves run over. The
wait between attempts is llmtap's own, so it does not count as provider silence for the idle
timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmtap.capture.tap import HeaderList
from llmtap.proxy.attempt_log import AttemptLog, AttemptNote
from llmtap.proxy.gateway.fallbacks import Fallback, request_for
from llmtap.proxy.gateway.retry_policy import (
    RETRY_ERRORS,
    RETRY_STATUSES,
    RetryPolicy,
    retry_after_s,
)
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.routing import Upstream
from llmtap.proxy.types import ClientSide, Pool, UpstreamExchange, UpstreamSide

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange

FALLBACK_ERRORS = RETRY_ERRORS | {"upstream_tls_error", "upstream_proxy_error"}
"""Failures that send a call on to its next fallback target (the target cannot be reached)."""


@dataclass(slots=True)
class Target:
    upstream: Upstream
    path: bytes
    fallback: Fallback | None
    index: int | None
    """Its place in ``Helicone-Fallbacks`` (None: the call's own route)."""
    request_bytes: bytes | None = None
    """Built when it is first tried (a fallback that is never needed costs no copy of a body)."""


class Attempt:
    """One attempt, as the pool and its connection see the exchange (``UpstreamExchange``)."""

    __slots__ = (
        "_conn",
        "dropped",
        "exchange",
        "final",
        "note",
        "out",
        "retried",
        "run",
        "target",
    )

    def __init__(self, run: AttemptRun, target: Target, note: AttemptNote, final: bool) -> None:
        self.run = run
        self.exchange = run.exchange
        self.out = run.out
        """Where an answer the client gets goes (the exchange, or the cache's relay)."""
        self.target = target
        self.note = note
        self.final = final
        """No attempt can follow: whatever comes is relayed."""
        self.dropped = False
        self.retried = False
        self._conn: UpstreamSide | None = None

    # -- what the connection reads and sets ---------------------------------------------------

    @property
    def conn(self) -> UpstreamSide | None:
        return self._conn

    @conn.setter
    def conn(self, value: UpstreamSide | None) -> None:
        self._conn = value
        if value is not None:
            self.note.replayed = self.retried
        if not self.dropped:
            # the client side pauses it, the sweep and a leaving client abort it
            self.exchange.conn = value

    @property
    def last_activity_ns(self) -> int:
        return self.exchange.last_activity_ns

    @last_activity_ns.setter
    def last_activity_ns(self, value: int) -> None:
        self.exchange.last_activity_ns = value

    @property
    def method(self) -> bytes:
        return self.exchange.method

    @property
    def request_headers(self) -> HeaderList:
        return self.exchange.request_headers

    @property
    def request_bytes(self) -> bytes:
        request = self.target.request_bytes
        assert request is not None
        return request

    @property
    def upstream(self) -> Upstream:
        return self.target.upstream

    @property
    def client(self) -> ClientSide:
        return self.exchange.client

    @property
    def head_sent(self) -> bool:
        return self.exchange.head_sent

    @property
    def finished(self) -> bool:
        return self.dropped or self.exchange.finished

    # -- what the connection drives -----------------------------------------------------------

    def on_response_head(
        self, status: int, reason: bytes, headers: HeaderList, upstream_chunked: bool
    ) -> None:
        if self.dropped or self.exchange.finished:
            return
        self.note.status = status
        self.note.end_ns = time.perf_counter_ns()
        if not self.final and self.run.holds_answer(self, status, headers):
            return
        index = self.run.answered(self)
        if index is not None:
            number = b"%d" % index
            headers = [
                *headers,
                (b"helicone-fallback-index", number),
                (b"llmtap-fallback-index", number),
            ]
        self.out.on_response_head(status, reason, headers, upstream_chunked)

    def on_response_body(self, data: bytes) -> None:
        if not self.dropped:
            self.out.on_response_body(data)

    def on_response_complete(self) -> None:
        if not self.dropped:
            self._conn = None
            self.out.on_response_complete()

    def fail(self, status: int, code: str, message: str) -> None:
        if self.dropped or self.exchange.finished:
            # finished: cut off by the sweep or the client while connecting; its log is read
            return
        if not self.exchange.head_sent:
            self.note.error = code
            self.note.end_ns = time.perf_counter_ns()
            if not self.final and self.run.holds_failure(self, code):
                return
            self.run.answered(self)
        self._conn = None
        self.out.fail(status, code, message)


class AttemptRun:
    """The attempts of one call: which target, which try, how long to wait."""

    __slots__ = (
        "_body_json",
        "_deadline_ns",
        "_loop",
        "_metrics",
        "_pool",
        "_targets",
        "_tries",
        "_where",
        "exchange",
        "log",
        "out",
        "retry",
    )

    def __init__(
        self,
        pool: Pool,
        metrics: ProxyMetrics,
        exchange: Exchange,
        retry: RetryPolicy | None,
        targets: list[Target],
        deadline_ns: int,
        body_json: dict[str, Any] | None = None,
        out: UpstreamExchange | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._body_json = body_json
        """The request body as JSON, when a fallback merges keys into it."""
        self._loop = asyncio.get_running_loop()
        self.exchange = exchange
        self.out: UpstreamExchange = exchange if out is None else out
        """The answer's way to the client: the exchange, or the cache's ``MissRelay``."""
        self.retry = retry
        self._targets = targets
        self._deadline_ns = deadline_ns
        self._where = 0
        """Index of the target being tried."""
        self._tries = 0
        """Retries made on it so far."""
        self.log = AttemptLog()
        exchange.attempt_log = self.log

    def start(self) -> None:
        self._send()

    def _send(self) -> None:
        exchange = self.exchange
        if exchange.finished:
            return  # the client left, or the total timeout answered, while we waited
        target = self._targets[self._where]
        if target.request_bytes is None:
            assert target.fallback is not None
            target.request_bytes = request_for(
                exchange.request_bytes,
                exchange.method,
                target.path,
                target.fallback,
                self._body_json,
            )
        retries = self.retry.retries if self.retry is not None else 0
        final = self._where == len(self._targets) - 1 and self._tries >= retries
        now = time.perf_counter_ns()
        note = AttemptNote(target.upstream, target.path, target.index, now)
        self.log.notes.append(note)
        exchange.last_activity_ns = now
        self._pool.send(Attempt(self, target, note, final))

    def answered(self, attempt: Attempt) -> int | None:
        """The attempt's answer (or failure) goes to the client: the call's target is its."""
        exchange = self.exchange
        target = attempt.target
        exchange.upstream = target.upstream
        exchange.upstream_path = target.path
        self.log.fallback_index = target.index
        return target.index

    def holds_answer(self, attempt: Attempt, status: int, headers: HeaderList) -> bool:
        """Whether an answer is held back for another attempt (then that one is under way)."""
        retry = self.retry
        if retry is not None and status in RETRY_STATUSES and self._tries < retry.retries:
            wait = retry.wait_s(self._tries + 1, retry_after_s(headers))
            if self._in_time(wait):
                self._drop(attempt)
                self._again(wait)
                return True
        fallback = attempt.target.fallback
        if self._has_next() and fallback is not None and fallback.falls_on(status):
            self._drop(attempt)
            self._next_target()
            return True
        return False

    def holds_failure(self, attempt: Attempt, code: str) -> bool:
        """Whether a failure before any answer leads to another attempt."""
        retry = self.retry
        if retry is not None and code in RETRY_ERRORS and self._tries < retry.retries:
            wait = retry.wait_s(self._tries + 1, None)
            if self._in_time(wait):
                self._drop(attempt)
                self._again(wait)
                return True
        if self._has_next() and code in FALLBACK_ERRORS:
            self._drop(attempt)
            self._next_target()
            return True
        return False

    def _has_next(self) -> bool:
        return self._where < len(self._targets) - 1

    def _in_time(self, wait_s: float) -> bool:
        return time.perf_counter_ns() + int(wait_s * 1e9) < self._deadline_ns

    def _drop(self, attempt: Attempt) -> None:
        """The attempt's answer is not the client's: stop reading it (its connection cannot be
        pooled in the middle of a response)."""
        attempt.dropped = True
        conn, attempt._conn = attempt._conn, None
        self.exchange.conn = None
        if conn is not None:
            conn.abort()

    def _again(self, wait_s: float) -> None:
        self._tries += 1
        self._metrics.gateway_retries += 1
        wait_ns = int(wait_s * 1e9)
        # our own wait is not provider silence: the idle sweep starts counting after it
        self.exchange.last_activity_ns = time.perf_counter_ns() + wait_ns
        self._loop.call_later(wait_s, self._send)

    def _next_target(self) -> None:
        self._metrics.gateway_fallbacks += 1
        self._where += 1
        self._tries = 0
        self._loop.call_soon(self._send)
