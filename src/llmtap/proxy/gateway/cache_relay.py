"""The exchange as the provider pool sees it on a cache miss, or the way back of a miss's final
answer when the call asked for retries or fallbacks (``AttemptRun.out``: then only its
``on_response_*``/``fail`` are used, and only for the answer the client gets).

It adds ``Helicone-Cache: MISS`` (and ``Llmtap-Cache``) to the response head, drops any such
header the provider itself sent (only llmtap says what came from its cache), and keeps what the
answer needs to be replayed later: the status line and the headers as they came. Everything
else is the exchange's own (``conn``, ``retried``, ``last_activity_ns`` read and write through).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmtap.capture.tap import HeaderList
from llmtap.proxy.routing import Upstream
from llmtap.proxy.types import ClientSide, UpstreamSide

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange

CACHE_HEADER_NAMES = frozenset(
    {b"helicone-cache", b"llmtap-cache", b"helicone-cache-bucket-idx", b"llmtap-cache-bucket-idx"}
)


def cache_headers(status: bytes, idx: int | None) -> HeaderList:
    out = [(b"helicone-cache", status), (b"llmtap-cache", status)]
    if idx is not None:
        out.append((b"helicone-cache-bucket-idx", b"%d" % idx))
        out.append((b"llmtap-cache-bucket-idx", b"%d" % idx))
    return out


class MissRelay:
    __slots__ = (
        "completed",
        "exchange",
        "headers",
        "idx",
        "key",
        "reason",
        "ttl_ms",
        "upstream_chunked",
    )

    def __init__(self, exchange: Exchange, key: str, idx: int | None, ttl_ms: int) -> None:
        self.exchange = exchange
        self.key = key
        self.idx = idx
        """The slot this call fills (None: it saves nothing)."""
        self.ttl_ms = ttl_ms
        self.reason = b""
        self.headers: HeaderList = []
        self.upstream_chunked = False
        self.completed = False
        """The provider's answer ended normally (not cut, not left by the client)."""

    # -- read and written by the provider connection, kept on the exchange ----------------------

    @property
    def conn(self) -> UpstreamSide | None:
        return self.exchange.conn

    @conn.setter
    def conn(self, value: UpstreamSide | None) -> None:
        self.exchange.conn = value

    @property
    def retried(self) -> bool:
        return self.exchange.retried

    @retried.setter
    def retried(self, value: bool) -> None:
        self.exchange.retried = value

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
        return self.exchange.request_bytes

    @property
    def upstream(self) -> Upstream | None:
        return self.exchange.upstream

    @property
    def client(self) -> ClientSide:
        return self.exchange.client

    @property
    def head_sent(self) -> bool:
        return self.exchange.head_sent

    @property
    def finished(self) -> bool:
        return self.exchange.finished

    # -- the response -------------------------------------------------------------------------

    def on_response_head(
        self, status: int, reason: bytes, headers: HeaderList, upstream_chunked: bool
    ) -> None:
        self.reason = reason
        self.headers = headers
        self.upstream_chunked = upstream_chunked
        relayed = [(n, v) for n, v in headers if n.lower() not in CACHE_HEADER_NAMES]
        relayed.extend(cache_headers(b"MISS", None))
        self.exchange.on_response_head(status, reason, relayed, upstream_chunked)

    def on_response_body(self, data: bytes) -> None:
        self.exchange.on_response_body(data)

    def on_response_complete(self) -> None:
        self.completed = True
        self.exchange.on_response_complete()

    def fail(self, status: int, code: str, message: str) -> None:
        self.exchange.fail(status, code, message)
