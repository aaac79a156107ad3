"""RowBuilder: the base ``RequestRow`` of a record, before any handler runs.

Everything the proxy measured or copied lands here as is: timings, status, error, headers,
properties, user and session, body references and sizes. ``org_id`` is the proxy's answer if it
had one (``Authenticate`` fills it otherwise); model, usage and cost are left for the handlers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec

from llmtap.record import EXTRA_RATELIMIT_IGNORED, LogRecord
from llmtap.stores.fields import BY_NAME
from llmtap.stores.notes import RATELIMIT_IGNORED, callers_own
from llmtap.stores.row import RequestRow

PROMPT_ID = BY_NAME["prompt_id"]
PROMPT_VERSION = BY_NAME["prompt_version"]


def _cut(value: str | None, length: int | None) -> str | None:
    # a value longer than its column, or holding a NUL (an async log's meta is JSON, where
    # "\u0000" is legal), would make Postgres refuse the whole row (poison)
    if value is None or length is None:
        return value
    return value.replace("\x00", "")[:length]


class RowBuilder:
    name = "row"

    def __call__(self, record: LogRecord) -> RequestRow:
        timing = record.timing
        request_body = record.request_body
        response_body = record.response_body
        properties = callers_own(record.properties)
        ignored = record.extra.get(EXTRA_RATELIMIT_IGNORED)
        if ignored is not None:
            properties[RATELIMIT_IGNORED] = ignored
        return RequestRow(
            request_id=record.request_id,
            org_id=record.org_id or "",
            created_unix_ms=timing.start_unix_ms,
            source=record.source,
            provider=record.provider,
            method=record.method,
            target_url=record.target_url,
            path=urlsplit(record.target_url).path or "/",
            status=record.status,
            error=record.error,
            streamed=record.streamed,
            model=record.model_override,
            user_id=record.user_id,
            session_id=record.session_id,
            session_path=record.session_path,
            session_name=record.session_name,
            properties=properties,
            latency_ms=timing.total_ms,
            ttft_ms=timing.first_chunk_ms,
            upstream_headers_ms=timing.upstream_headers_ms,
            request_size=request_body.size if request_body else 0,
            response_size=response_body.size if response_body else 0,
            request_body_key=request_body.key if request_body else None,
            response_body_key=response_body.key if response_body else None,
            request_omitted=bool(request_body and request_body.omitted),
            response_omitted=bool(response_body and response_body.omitted),
            request_headers=dict(record.request_headers),
            response_headers=dict(record.response_headers),
            trace_id=record.trace_id,
            span_id=record.span_id,
            parent_span_id=record.parent_span_id,
            attempts=record.attempts,
            attempt_log=(
                None
                if record.attempt_log is None
                else msgspec.json.encode(record.attempt_log).decode()
            ),
            fallback_index=record.fallback_index,
            cache_hit=record.cache == "hit",
            prompt_id=_cut(record.prompt_id, PROMPT_ID.length),
            prompt_version=_cut(record.prompt_version, PROMPT_VERSION.length),
        )
