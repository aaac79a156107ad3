"""A cached answer made ready to replay, and the replay itself.

``Prepared`` is built once per slot when the memory layer learns an answer (``MemoryCache.add``),
not once per hit: the headers the client gets (the stored ones, ``Content-Length`` and the
``Helicone-Cache: HIT`` / bucket-index headers) as the list the record logs and, for a whole
(not chunked) body, as the header lines already rendered. A hit on such an answer is then one
``Exchange.respond_whole``: the head and body in one write, with none of the per-header work of
a relayed answer; and the head as the record logs it (``logged_head``: redacted once, not by the
shipper for every hit). Streams, answers to ``HEAD``, bodies the capture would cut and calls whose
stream llmtap filters go through the exchange's ``on_response_*`` as a relayed answer does; the
bytes the client gets are the same either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmtap.capture.logged_head import LoggedHead, logged_head
from llmtap.capture.tap import HOP_BY_HOP, HeaderList
from llmtap.proxy.gateway.cache_relay import cache_headers
from llmtap.proxy.gateway.cache_store import CachedResponse

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange

_NO_BODY_STATUSES = frozenset({204, 304})


class Prepared:
    __slots__ = ("answer", "head_lines", "headers", "idx", "logged")

    def __init__(self, answer: CachedResponse, idx: int) -> None:
        self.answer = answer
        self.idx = idx
        whole = not answer.chunked and answer.status not in _NO_BODY_STATUSES
        headers = list(answer.headers)
        if whole:
            headers.append((b"content-length", b"%d" % len(answer.body)))
        headers.extend(cache_headers(b"HIT", idx))
        self.headers: HeaderList = headers
        """The response headers as a hit on any call but ``HEAD`` relays and logs them."""
        self.head_lines: bytes | None = (
            b"".join(b"%s: %s\r\n" % (n, v) for n, v in headers if n.lower() not in HOP_BY_HOP)
            if whole
            else None
        )
        """``headers`` rendered as ``on_response_head`` writes them (None: not a whole body)."""
        self.logged: LoggedHead = logged_head(headers)
        """``headers`` as each hit's record logs them."""


def replay(exchange: Exchange, prepared: Prepared) -> None:
    """Answer ``exchange`` with the cached answer (the caller counts the hit and marks it)."""
    answer = prepared.answer
    if prepared.head_lines is not None and exchange.respond_whole(
        answer.status,
        answer.reason,
        prepared.headers,
        prepared.head_lines,
        answer.body,
        prepared.logged,
    ):
        return
    headers = prepared.headers
    if exchange.method == b"HEAD" and prepared.head_lines is not None:
        # no body follows: the length of the one a GET gets is not said (as before)
        headers = [h for h in headers if h[0] != b"content-length"]
    # head, body and end in one send (while other calls are in flight, as a provider's read)
    client = exchange.client
    client.cork()
    try:
        exchange.on_response_head(answer.status, answer.reason, headers, answer.chunked)
        if headers is prepared.headers:
            exchange.resp_logged = prepared.logged
        if answer.body:
            exchange.on_response_body(answer.body)
        exchange.on_response_complete()
    finally:
        client.uncork()
