"""RequestRow: one processed call, as every store and the API see it.

Its columns are declared in ``stores/fields.py`` (types, stores, what the API may do with each);
a test keeps the two in step. The consumer's handler chain turns a ``LogRecord`` into a
``RequestRow``; sinks write rows idempotently keyed on ``request_id``. Notes llmtap itself makes
on a call (an unknown key, a body it could not parse, a claimed request id) are properties named
``llmtap-*`` (``llmtap.stores.notes``), filterable like any other. Token counts are ``None``
when the provider did not report them (``usage_source == "unknown"``): a missing number is never
stored as 0. Cost is an integer number of nano-dollars (1e-9 USD), ``None`` when the model has no
known price (unpriced).
"""

from __future__ import annotations

import msgspec


class RequestRow(msgspec.Struct, kw_only=True):
    request_id: str
    org_id: str
    created_unix_ms: float
    source: str
    provider: str
    method: str
    target_url: str
    path: str
    status: int
    error: str | None = None
    streamed: bool = False

    model: str | None = None
    """The model the caller asked for (or ``Helicone-Model-Override``)."""
    response_model: str | None = None
    """The model the provider says answered."""
    endpoint: str | None = None
    """``chat.completions`` | ``responses`` | ``embeddings`` | ``messages`` | ``models`` | ``other``."""
    finish_reason: str | None = None

    user_id: str | None = None
    session_id: str | None = None
    session_path: str | None = None
    session_name: str | None = None
    properties: dict[str, str] = msgspec.field(default_factory=dict)

    usage_source: str = "unknown"
    """``provider`` (the provider's own numbers) | ``unknown`` (none reported)."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    audio_input_tokens: int | None = None
    audio_output_tokens: int | None = None

    cost_nano_usd: int | None = None
    cost_source: str = "unpriced"
    """``genai-prices`` | ``override`` | ``unpriced`` | ``cache_hit`` (answered from the
    gateway's cache: cost 0)."""

    latency_ms: float = 0.0
    ttft_ms: float | None = None
    upstream_headers_ms: float | None = None

    request_size: int = 0
    response_size: int = 0
    request_body_key: str | None = None
    response_body_key: str | None = None
    request_omitted: bool = False
    response_omitted: bool = False
    request_headers: dict[str, str] = msgspec.field(default_factory=dict)
    response_headers: dict[str, str] = msgspec.field(default_factory=dict)

    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None

    record_digest: str | None = None
    """A digest of the queue record this row came from (the same for every redelivery of it):
    how the records store tells a redelivery (same digest: replace) from a different call that
    claims a logged request id (kept beside it under a fresh id, see ``stores.records.claims``).
    ``None`` for rows written without a record (they replace, as before)."""

    attempts: int | None = None
    """How many times the proxy sent the call upstream: 1, 2 when it was retried once on a fresh
    connection (a replayable call whose pooled connection had gone stale), 0 when the proxy
    answered without a provider. ``None`` for calls logged by ingestion, or before llmtap
    counted attempts."""

    attempt_log: str | None = None
    """A call that asked for retries or fallbacks: each attempt (target, start_ms, duration_ms,
    status, error, fallback_index) as a JSON array; the API shows it parsed. ``None`` for every
    other call."""
    fallback_index: int | None = None
    """Which ``Helicone-Fallbacks`` target answered (0 is the first); ``None`` without fallbacks."""
    cache_hit: bool = False
    """Answered from the gateway's response cache (``Helicone-Cache: HIT``): no provider was
    called, and ``cost_nano_usd`` is 0."""
    cache_saved_nano_usd: int | None = None
    """For a cache hit: what the call would have cost at the provider (the price of the usage
    in the answer it was served); ``None`` for other calls, or when that has no known price."""
    prompt_id: str | None = None
    """``Helicone-Prompt-Id``: the prompt the caller says this call used."""
    prompt_version: str | None = None
    """``Helicone-Prompt-Version``: which version of that prompt."""
