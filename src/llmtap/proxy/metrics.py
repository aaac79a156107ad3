"""Counters of one proxy process, served as Prometheus text at ``/_llmtap/metrics``.

Plain integers: the loop thread and the shipper thread each own the counters they bump, except
``records_dropped``, which both bump under the shipper's lock. Counters never go down.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

_GAUGES = frozenset({"shipper_backlog", "spool_pending"})


@dataclass
class ProxyMetrics:
    requests: int = 0
    refused: int = 0
    rejected_head_too_large: int = 0
    """431s: a request line + headers over ``max_request_head_bytes`` or ``max_request_headers``."""
    rejected_malformed: int = 0
    """400s for bytes that are not HTTP/1.1 (or ask for a protocol upgrade); the connection closes."""
    rejected_pipelined: int = 0
    """429s: more than ``max_pipelined_requests`` requests queued on one connection."""
    head_timeouts: int = 0
    """Connections closed because a request head did not arrive within ``header_read_timeout_s``."""
    body_timeouts: int = 0
    """408s: a request body that did not arrive within ``body_read_timeout_s`` of its head."""
    idle_timeouts: int = 0
    """Keep-alive connections closed after ``keepalive_timeout_s`` without a next request."""
    upstream_errors: int = 0
    client_disconnects: int = 0
    internal_errors: int = 0
    """llmtap's own failures on the hot path that were skipped so the call could go on."""
    rate_limited: int = 0
    """429s: calls over a rate-limit policy (a header's or their key's)."""
    ratelimit_failopen: int = 0
    """Calls let through unchecked because the rate-limit store could not answer."""
    ratelimit_ignored: int = 0
    """Calls whose ``Helicone-RateLimit-Policy`` could not be read (ignored, like Helicone)."""
    records_published: int = 0
    """Records the queue accepted from ``publish`` (Kafka: handed to the producer)."""
    delivery_failures: int = 0
    """Accepted records Kafka later reported undelivered; they go to the spool."""
    records_spooled: int = 0
    records_dropped: int = 0
    """Records lost because the queue was down and the spool was full: never silent."""
    spool_replayed: int = 0
    spool_pending: int = 0
    """Records waiting in the disk spool for the queue to take them."""
    bodies_dropped: int = 0
    """Bodies the body store refused: their records were published without them, saying why
    (``extra.body_error``)."""
    cache_hits: int = 0
    """Calls answered from the gateway's response cache (docs/gateway.md)."""
    cache_misses: int = 0
    """Calls that asked for the cache and went to the provider."""
    cache_saves: int = 0
    """Answers saved to the cache."""
    cache_errors: int = 0
    """Cache store failures (unreachable, slow, unreadable): the call went through uncached."""
    cache_bypassed: int = 0
    """Calls that asked for the cache while it was skipped after a store failure."""
    cache_evicted: int = 0
    """Cached answers removed before their time to make room in a full ``cache.db``
    (``cache_max_mb``)."""
    cache_not_stored: int = 0
    """Answers not cached because ``cache.db`` was full even after evicting."""
    cache_lookups: int = 0
    """Calls that asked the cache store (a hit from this process's memory does not)."""
    shipper_errors: int = 0
    shipper_backlog: int = 0
    shipper_give_ways: int = 0
    """Times the loop paused ``GIVE_WAY_S`` for a shipper more than ``shipper_give_way_backlog``
    calls behind: calls waited on logging (a proxy answering faster than it can log)."""
    gateway_retries: int = 0
    """Attempts sent again on the same target because of ``Helicone-Retry-*``."""
    gateway_fallbacks: int = 0
    """Calls moved on to their next ``Helicone-Fallbacks`` target."""

    def render(self) -> bytes:
        lines = []
        for f in fields(self):
            kind = "gauge" if f.name in _GAUGES else "counter"
            name = f"llmtap_proxy_{f.name}" + ("_total" if kind == "counter" else "")
            lines.append(f"# TYPE {name} {kind}\n{name} {getattr(self, f.name)}\n")
        return "".join(lines).encode()
