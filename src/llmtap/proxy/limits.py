"""What a client connection may make the proxy hold, for how long, and what it answers when
a request is over a limit (or is no request it proxies).

Read from ``Settings`` once at start; each client connection keeps a reference, so a check in a
parser callback costs the same attribute lookup it always did
(docs/decisions/2026-12-01-proxy-client-limits.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmtap.settings import Settings

Refusal = Literal[
    "too_large",
    "bad_target",
    "upgrade",
    "head_too_large",
    "pipelined",
    "head_timeout",
    "body_timeout",
]
"""Why a request is answered by the client connection itself, not by the provider."""


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

    def refusal(self, why: Refusal) -> tuple[int, str, str]:
        """(status, error code, message) of the provider-shaped answer to a refused request."""
        if why == "too_large":
            return (
                413,
                "request_too_large",
                f"request body is larger than {self.max_body} bytes (LLMTAP_MAX_REQUEST_BODY_BYTES)",
            )
        if why == "bad_target":
            return (
                400,
                "invalid_request_target",
                "the request target must be a path starting with '/' (origin-form)",
            )
        if why == "upgrade":
            return 400, "upgrade_not_supported", "protocol upgrades are not proxied"
        if why == "head_too_large":
            return (
                431,
                "request_head_too_large",
                f"request line and headers are larger than {self.max_head} bytes or more than "
                f"{self.max_headers} fields (LLMTAP_MAX_REQUEST_HEAD_BYTES, "
                "LLMTAP_MAX_REQUEST_HEADERS)",
            )
        if why == "pipelined":
            return (
                429,
                "too_many_pipelined_requests",
                f"more than {self.max_pipelined} requests pipelined behind the one being "
                "answered (LLMTAP_MAX_PIPELINED_REQUESTS)",
            )
        if why == "head_timeout":
            limit = self.head_timeout_ns / 1e9
            return (
                408,
                "request_timeout",
                f"the request head did not arrive within {limit:g}s (LLMTAP_HEADER_READ_TIMEOUT_S)",
            )
        limit = self.body_timeout_ns / 1e9
        return (
            408,
            "request_timeout",
            f"the request body did not arrive within {limit:g}s (LLMTAP_BODY_READ_TIMEOUT_S)",
        )
