"""What a client connection may make the proxy hold, and for how long.

Read from ``Settings`` once at start; each client connection keeps a reference, so a check in a
parser callback costs the same attribute lookup it always did
(docs/decisions/2026-12-01-proxy-client-limits.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtap.settings import Settings


@dataclass(frozen=True, slots=True)
class ClientLimits:
    max_body: int
    """Request body bytes (``max_request_body_bytes``; over it: 413)."""
    max_head: int
    """Request line + header bytes, chunked trailers included (``max_request_head_bytes``; 431)."""
    max_headers: int
    """Header fields of one request (``max_request_headers``; 431)."""
    max_pipelined: int
    """Requests queued behind the one being answered (``max_pipelined_requests``; 429)."""
    head_timeout_ns: int
    """A request head is due this long after its first byte (``header_read_timeout_s``)."""
    body_timeout_ns: int
    """A request body is due this long after its head (``body_read_timeout_s``; 408)."""
    keepalive_timeout_ns: int
    """An idle keep-alive connection is closed after this long (``keepalive_timeout_s``)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientLimits:
        return cls(
            max_body=settings.max_request_body_bytes,
            max_head=settings.max_request_head_bytes,
            max_headers=settings.max_request_headers,
            max_pipelined=settings.max_pipelined_requests,
            head_timeout_ns=int(settings.header_read_timeout_s * 1e9),
            body_timeout_ns=int(settings.body_read_timeout_s * 1e9),
            keepalive_timeout_ns=int(settings.keepalive_timeout_s * 1e9),
        )
