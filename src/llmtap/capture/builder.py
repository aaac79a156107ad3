"""The one place a ``LogRecord`` is assembled, for proxied calls, async logs and OTLP spans.

What the caller asked llmtap to record (``TapHeaders``: request id, user, session, properties,
model override) is copied onto the record here and nowhere else, so a new ``Helicone-*`` setting
reaches every source by one change in ``tap`` and one here.
"""

from __future__ import annotations

from llmtap.capture.tap import TapHeaders
from llmtap.record import AttemptInfo, BodyRef, LogRecord, Timing


def build_log_record(
    tap: TapHeaders,
    *,
    source: str,
    provider: str,
    method: str,
    target_url: str,
    status: int,
    timing: Timing,
    auth_key_hash: str | None,
    org_id: str | None,
    request_body: BodyRef | None,
    response_body: BodyRef | None,
    streamed: bool,
    request_headers: dict[str, str] | None = None,
    response_headers: dict[str, str] | None = None,
    usage_injected: bool = False,
    error: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
    parent_span_id: str | None = None,
    extra: dict[str, str] | None = None,
    attempts: int | None = None,
    attempt_log: list[AttemptInfo] | None = None,
    fallback_index: int | None = None,
    cache: str | None = None,
) -> LogRecord:
    """The record of one call; headers must already be redacted (``capture.redaction``)."""
    return LogRecord(
        request_id=tap.request_id,
        source=source,
        provider=provider,
        method=method,
        target_url=target_url,
        status=status,
        timing=timing,
        auth_key_hash=auth_key_hash,
        org_id=org_id,
        request_headers=request_headers or {},
        response_headers=response_headers or {},
        request_body=request_body,
        response_body=response_body,
        streamed=streamed,
        usage_injected=usage_injected,
        user_id=tap.user_id,
        session_id=tap.session_id,
        session_path=tap.session_path,
        session_name=tap.session_name,
        properties=tap.properties,
        model_override=tap.model_override,
        error=error,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        extra=extra or {},
        attempts=attempts,
        attempt_log=attempt_log,
        fallback_index=fallback_index,
        cache=cache,
        prompt_id=tap.prompt_id,
        prompt_version=tap.prompt_version,
        posthog_key=tap.posthog_key,
        posthog_host=tap.posthog_host,
    )
