"""Turning a finished exchange into a ``LogRecord`` plus the body bytes to store.

Runs on the shipper thread, never on the loop. This is where secrets are redacted (headers,
URL query) — before anything reaches the body store or the queue. The shipper hands
``build_record`` its batch's pack (``body_keys``): each body kept is added to it as the record is
built, so the record carries its body keys from the start (one ``LogRecord`` per call, not one
plus a copy per key). Without a pack the references have no keys yet (``Captured.with_keys``). A
compressed response is stored inflated when it inflates completely within ``max_decoded_bytes``
(the client got it as sent), else as it came.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from llmtap.capture.bodies import body_ref, with_key
from llmtap.capture.builder import build_log_record
from llmtap.capture.decode import COMPRESSED, encoding_name, inflate
from llmtap.capture.redaction import redact_headers, redact_url
from llmtap.capture.tap import header_value
from llmtap.keys import hash_key
from llmtap.proxy.attempt_log import AttemptLog
from llmtap.proxy.exchange import Exchange
from llmtap.record import AttemptInfo, LogRecord, Timing


@dataclass(slots=True)
class Captured:
    """A record whose body references have no keys yet, and the bodies to store."""

    record: LogRecord
    org_id: str | None
    request_body: bytes | None
    response_body: bytes | None

    def with_keys(self, request_key: str | None, response_key: str | None) -> LogRecord:
        return msgspec.structs.replace(
            self.record,
            request_body=with_key(self.record.request_body, request_key),
            response_body=with_key(self.record.response_body, response_key),
        )


def _ms(start_ns: int, end_ns: int) -> float | None:
    return round((end_ns - start_ns) / 1e6, 3) if end_ns else None


def _decoded(data: bytes, encoding: bytes | None, limit: int) -> tuple[bytes, str | None]:
    """Response bytes as text the consumer and the API can read (the client got them as sent)."""
    name = encoding_name(encoding)
    if not data or name not in COMPRESSED:
        return data, None
    inflated = inflate(data, limit)
    if inflated is None or not inflated.complete or inflated.over_limit:
        return data, None  # truncated, corrupt or too large: keep the raw bytes, still encoded
    return inflated.data, name


def _attempt_infos(log: AttemptLog, t0_ns: int) -> list[AttemptInfo]:
    return [
        AttemptInfo(
            target=redact_url(note.upstream.origin + note.path.decode("latin-1")),
            start_ms=round((note.start_ns - t0_ns) / 1e6, 3),
            duration_ms=_ms(note.start_ns, note.end_ns),
            status=note.status,
            error=note.error,
            fallback_index=note.fallback_index,
        )
        for note in log.notes
    ]


_NO_HASH = ""
"""``auth_key_hash`` not given: ``build_record`` hashes the call's key itself."""


def build_record(
    exchange: Exchange,
    org_id: str | None,
    *,
    max_decoded_bytes: int,
    auth_key_hash: str | None = _NO_HASH,
    body_keys: Callable[[bytes], str] | None = None,
) -> Captured:
    """The call's record and bodies. ``auth_key_hash``: the caller's key already hashed (the
    shipper hashed it to find the organization). ``body_keys`` stores a body (adds it to the
    batch's pack) and returns its key."""
    tap = exchange.tap
    assert tap is not None
    extra: dict[str, str] = {}

    req_ctype = header_value(exchange.request_headers, b"content-type")
    request_ref, request_data = body_ref(
        exchange.request_body,
        omit=tap.omit_request,
        content_type=req_ctype.decode("latin-1") if req_ctype else None,
        keys=body_keys,
    )

    head = exchange.resp_logged
    if head is None:
        resp_ctype_raw = header_value(exchange.resp_headers, b"content-type")
        resp_ctype = resp_ctype_raw.decode("latin-1") if resp_ctype_raw else None
        encoding = header_value(exchange.resp_headers, b"content-encoding")
        response_headers = redact_headers(exchange.resp_headers)
    else:  # a replayed answer: its head was read once, for every hit on it
        resp_ctype, encoding, response_headers = head.content_type, head.encoding, head.headers
    raw = b"" if tap.omit_response else b"".join(exchange.resp_parts)
    data, decoded_from = _decoded(raw, encoding, max_decoded_bytes)
    if decoded_from:
        extra["response_decoded_from"] = decoded_from
    if exchange.notes:
        extra.update(exchange.notes)
    response_ref, response_data = body_ref(
        data,
        omit=tap.omit_response,
        size=exchange.resp_size,
        content_type=resp_ctype,
        truncated=exchange.resp_truncated,
        keys=body_keys,
    )

    upstream = exchange.upstream
    if upstream is not None:
        target = redact_url(upstream.origin + exchange.upstream_path.decode("latin-1"))
        provider = upstream.provider
    else:
        target = redact_url(exchange.url.decode("latin-1"))
        provider = "unknown"
    if auth_key_hash == _NO_HASH:
        auth_key_hash = None if tap.auth is None else hash_key(tap.auth)
    t0 = exchange.t0_ns
    log = exchange.attempt_log
    if log is not None and log.notes:
        attempts = log.attempts
        attempt_log: list[AttemptInfo] | None = _attempt_infos(log, t0)
    else:
        attempts = (2 if exchange.retried else 1) if exchange.request_bytes else 0
        attempt_log = None
    record = build_log_record(
        tap,
        source="proxy",
        provider=provider,
        method=exchange.method.decode("latin-1"),
        target_url=target,
        status=exchange.status,
        timing=Timing(
            start_unix_ms=exchange.start_unix_ms,
            total_ms=_ms(t0, exchange.t_end_ns) or 0.0,
            upstream_headers_ms=_ms(t0, exchange.upstream_headers_ns),
            first_chunk_ms=_ms(t0, exchange.first_chunk_ns),
        ),
        auth_key_hash=auth_key_hash,
        org_id=org_id,
        request_headers=redact_headers(exchange.request_headers),
        response_headers=response_headers,
        request_body=request_ref,
        response_body=response_ref,
        streamed=bool(resp_ctype and resp_ctype.startswith("text/event-stream")),
        usage_injected=exchange.usage_filter is not None,
        error=exchange.error,
        extra=extra,
        attempts=attempts,
        attempt_log=attempt_log,
        fallback_index=None if log is None else log.fallback_index,
        cache=exchange.cache,
    )
    return Captured(record, org_id, request_data, response_data)
