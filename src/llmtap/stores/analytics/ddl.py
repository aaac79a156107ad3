"""The analytics table, one definition for chDB and ClickHouse.

``ReplacingMergeTree(version)`` keyed by organization and request id keeps the newest copy of a
redelivered row once parts merge; queries never wait for that: they read with ``FINAL``
(docs/decisions/2026-11-25-analytics-dedup.md). ``created`` is in the sorting key for time-range
scans; it is part of every record and identical across redeliveries, so dedup still holds.
"""

from __future__ import annotations

TABLE = "llmtap_requests"

CREATE_REQUESTS = f"""
CREATE TABLE IF NOT EXISTS {TABLE}
(
    org_id String,
    request_id String,
    created DateTime64(3, 'UTC'),
    version UInt64,
    source LowCardinality(String),
    provider LowCardinality(String),
    method LowCardinality(String),
    path String,
    status Int32,
    error Nullable(String),
    streamed Bool,
    model LowCardinality(Nullable(String)),
    response_model LowCardinality(Nullable(String)),
    endpoint LowCardinality(Nullable(String)),
    finish_reason LowCardinality(Nullable(String)),
    user_id Nullable(String),
    session_id Nullable(String),
    session_path Nullable(String),
    session_name Nullable(String),
    properties Map(String, String),
    usage_source LowCardinality(String),
    input_tokens Nullable(Int64),
    output_tokens Nullable(Int64),
    total_tokens Nullable(Int64),
    cache_read_tokens Nullable(Int64),
    cache_write_tokens Nullable(Int64),
    reasoning_tokens Nullable(Int64),
    audio_input_tokens Nullable(Int64),
    audio_output_tokens Nullable(Int64),
    cost_nano_usd Nullable(Int64),
    cost_source LowCardinality(String),
    latency_ms Float64,
    ttft_ms Nullable(Float64),
    upstream_headers_ms Nullable(Float64),
    request_size Int64,
    response_size Int64,
    trace_id Nullable(String)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(created)
ORDER BY (org_id, toStartOfHour(created), request_id)
"""

COLUMNS = (
    "org_id",
    "request_id",
    "source",
    "provider",
    "method",
    "path",
    "status",
    "error",
    "streamed",
    "model",
    "response_model",
    "endpoint",
    "finish_reason",
    "user_id",
    "session_id",
    "session_path",
    "session_name",
    "properties",
    "usage_source",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
    "cost_nano_usd",
    "cost_source",
    "latency_ms",
    "ttft_ms",
    "upstream_headers_ms",
    "request_size",
    "response_size",
    "trace_id",
)
"""``RequestRow`` fields copied as they are (``created`` and ``version`` are computed)."""
