"""Turning a finished exchange into a ``LogRecord`` plus the body bytes to store.

Runs on the shipper thread, never on the loop. This is where secrets are redacted (headers,
URL query) — before anything reaches the body store or the queue. The record's body references
get their keys once the shipper has stored the batch's pack (``Captured.with_keys``).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import msgspec

from llmtap.keys import hash_key
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.headers import header_value
from llmtap.proxy.redaction import redact_headers, redact_url
from llmtap.record import BodyRef, LogRecord, Timing


@dataclass(slots=True)
class Captured:
    """A record whose body references have no keys yet, and the bodies to store."""

    record: LogRecord
    org_id: str | None
    request_body: bytes | None
    response_body: bytes | None

    def with_keys(self, request_key: str | None, response_key: str | None) -> LogRecord:
        def keyed(ref: BodyRef | None, key: str | None) -> BodyRef | None:
            return ref if ref is None or key is None else msgspec.structs.replace(ref, key=key)

        return msgspec.structs.replace(
            self.record,
            request_body=keyed(self.record.request_body, request_key),
            response_body=keyed(self.record.response_body, response_key),
        )


def _ms(start_ns: int, end_ns: int) -> float | None:
    return round((end_ns - start_ns) / 1e6, 3) if end_ns else None


def _decoded(data: bytes, encoding: bytes | None) -> tuple[bytes, str | None]:
    """Response bytes as text the consumer and the API can read (the client got them as sent)."""
    if not encoding or not data:
        return data, None
    name = encoding.strip().lower()
    try:
        if name == b"gzip":
            return gzip.decompress(data), "gzip"
        if name == b"deflate":
            return zlib.decompress(data), "deflate"
    except (OSError, EOFError, zlib.error):
        return data, None  # truncated or corrupt: keep the raw bytes, still encoded
    return data, None


def build_record(exchange: Exchange, org_id: str | None) -> Captured:
    tap = exchange.tap
    assert tap is not None
    request_id = tap.request_id
    extra: dict[str, str] = {}
    request_data: bytes | None = None
    response_data: bytes | None = None

    req_ctype = header_value(exchange.request_headers, b"content-type")
    request_ref: BodyRef
    if tap.omit_request:
        request_ref = BodyRef(omitted=True, size=len(exchange.request_body))
    else:
        ctype = req_ctype.decode("latin-1") if req_ctype else None
        request_data = exchange.request_body
        request_ref = BodyRef(size=len(exchange.request_body), content_type=ctype)

    resp_ctype_raw = header_value(exchange.resp_headers, b"content-type")
    resp_ctype = resp_ctype_raw.decode("latin-1") if resp_ctype_raw else None
    response_ref: BodyRef
    if tap.omit_response:
        response_ref = BodyRef(omitted=True, size=exchange.resp_size)
    else:
        raw = b"".join(exchange.resp_parts)
        data, decoded_from = _decoded(raw, header_value(exchange.resp_headers, b"content-encoding"))
        if decoded_from:
            extra["response_decoded_from"] = decoded_from
        response_data = data
        response_ref = BodyRef(
            size=exchange.resp_size,
            content_type=resp_ctype,
            truncated=exchange.resp_truncated,
        )

    upstream = exchange.upstream
    if upstream is not None:
        target = redact_url(upstream.origin + exchange.upstream_path.decode("latin-1"))
        provider = upstream.provider
    else:
        target = redact_url(exchange.url.decode("latin-1"))
        provider = "unknown"
    t0 = exchange.t0_ns
    record = LogRecord(
        request_id=request_id,
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
        auth_key_hash=hash_key(tap.auth) if tap.auth else None,
        org_id=org_id,
        request_headers=redact_headers(exchange.request_headers),
        response_headers=redact_headers(exchange.resp_headers),
        request_body=request_ref,
        response_body=response_ref,
        streamed=bool(resp_ctype and resp_ctype.startswith("text/event-stream")),
        usage_injected=exchange.usage_filter is not None,
        user_id=tap.user_id,
        session_id=tap.session_id,
        session_path=tap.session_path,
        session_name=tap.session_name,
        properties=tap.properties,
        model_override=tap.model_override,
        error=exchange.error,
        extra=extra,
        attempts=(2 if exchange.retried else 1) if exchange.request_bytes else 0,
    )
    return Captured(record, org_id, request_data, response_data)
