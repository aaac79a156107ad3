"""The LogRecord envelope: what the proxy (or an ingestion endpoint) puts on the queue.

One record per answered call, keyed on ``request_id``. It carries metadata, timings, status,
properties and *references* to the bodies (the bytes live in the body store). The encoding is
JSON through msgspec (fast, readable with Kafka's own console tools) and versioned by ``v``: a
consumer rejects a version it does not know, which sends the record to the dead-letter topic
instead of guessing. See docs/decisions/2026-11-25-queue-record-format.md.
"""

from __future__ import annotations

import msgspec

RECORD_VERSION = 1

EXTRA_BODY_ERROR = "body_error"
"""``extra`` key the proxy sets when the body store refused the call's bodies: the record is
published without them, and the key holds the store's error (internal text, never shown)."""


EXTRA_RATELIMIT_IGNORED = "ratelimit_ignored"
"""``extra`` key the proxy sets when the call's ``Helicone-RateLimit-Policy`` could not be read
(and was ignored, like Helicone does): why, in words safe to show. The row notes it as the
property ``llmtap-ratelimit-ignored``."""


class BodyRef(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where one body lives in the body store (``key``), or why it is not there."""

    key: str | None = None
    size: int = 0
    content_type: str | None = None
    omitted: bool = False
    """The caller asked for it not to be stored (``Helicone-Omit-*``): nothing was written."""
    truncated: bool = False
    """Larger than ``max_capture_bytes``: only the first part was stored."""


class Timing(msgspec.Struct, frozen=True, omit_defaults=True):
    """Wall-clock start plus durations in milliseconds measured on a monotonic clock."""

    start_unix_ms: float
    """When the proxy received the request's headers (epoch milliseconds)."""
    total_ms: float
    """Request received -> last byte sent to the client."""
    upstream_headers_ms: float | None = None
    """Request received -> provider's response headers parsed."""
    first_chunk_ms: float | None = None
    """Request received -> first response body bytes from the provider (time to first token)."""


class AttemptInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """One time a call asking for retries or fallbacks was sent upstream (in order)."""

    target: str
    """The URL it went to, with secrets in the query redacted."""
    start_ms: float
    """When it was sent, in milliseconds after the call's start."""
    duration_ms: float | None = None
    """Sent -> its answer's head, or its failure (None: cut off while it ran)."""
    status: int = 0
    """Its answer's status (0: none came)."""
    error: str | None = None
    """Why it failed before any answer (``upstream_connect_error``, ...)."""
    fallback_index: int | None = None
    """Which ``Helicone-Fallbacks`` target it went to."""


class LogRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    request_id: str
    source: str
    """``proxy`` | ``async-log`` | ``otel``."""
    provider: str
    """``openai`` | ``anthropic`` | a configured route name | the target host."""
    method: str
    target_url: str
    """The upstream URL the call went to, with secrets in the query redacted."""
    status: int
    """HTTP status the client received (0 when no response could be given)."""
    timing: Timing
    v: int = RECORD_VERSION
    auth_key_hash: str | None = None
    """sha256 hex of the llmtap key from ``Helicone-Auth``/``Llmtap-Auth`` (never the key)."""
    org_id: str | None = None
    request_headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Redacted: provider keys are replaced before the record is built."""
    response_headers: dict[str, str] = msgspec.field(default_factory=dict)
    request_body: BodyRef | None = None
    response_body: BodyRef | None = None
    streamed: bool = False
    usage_injected: bool = False
    """llmtap added ``stream_options.include_usage`` and removed the extra chunk for the client."""
    user_id: str | None = None
    session_id: str | None = None
    session_path: str | None = None
    session_name: str | None = None
    properties: dict[str, str] = msgspec.field(default_factory=dict)
    model_override: str | None = None
    error: str | None = None
    """Why the call did not complete normally: ``upstream_connect_error``, ``upstream_timeout``,
    ``client_disconnected``, ... (None when it did)."""
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    extra: dict[str, str] = msgspec.field(default_factory=dict)
    attempts: int | None = None
    """How many times the proxy sent the call upstream (2: retried once on a fresh connection;
    0: answered without a provider). ``None`` from ingestion and from proxies before it."""
    attempt_log: list[AttemptInfo] | None = None
    """Each attempt of a call that asked for retries or fallbacks (None for any other)."""
    fallback_index: int | None = None
    """Which ``Helicone-Fallbacks`` target answered (None: the call had none)."""
    cache: str | None = None
    """``hit`` (answered from the gateway's response cache) or ``miss`` (looked up, sent to
    the provider); ``None`` when the call did not ask for the cache (docs/gateway.md)."""
    prompt_id: str | None = None
    """``Helicone-Prompt-Id``."""
    prompt_version: str | None = None
    """``Helicone-Prompt-Version``."""
    posthog_key: str | None = None
    """``Helicone-Posthog-Key``: the PostHog project to export this call to. Read only by the
    consumer's PostHog export; never copied into a row, a header column or a body."""
    posthog_host: str | None = None
    """``Helicone-Posthog-Host``: where that project's PostHog is."""


class RecordDecodeError(ValueError):
    """The bytes are not a LogRecord this version understands (poison: never retriable)."""

    retriable = False


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LogRecord)


def encode(record: LogRecord) -> bytes:
    return _encoder.encode(record)


def decode(data: bytes) -> LogRecord:
    try:
        record = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise RecordDecodeError(f"not a LogRecord: {exc}") from exc
    if record.v != RECORD_VERSION:
        raise RecordDecodeError(f"unknown LogRecord version {record.v}")
    return record
