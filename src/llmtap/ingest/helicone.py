"""Helicone async logs (``POST /{custom,oai,anthropic}/v1/log``) as ``LogRecord``s.

The body is what ``helicone-helpers``' ``HeliconeManualLogger`` and Helicone's docs send::

    {"providerRequest":  {"url": str, "json": {...}, "meta": {str: str}},
     "providerResponse": {"status": int, "json": {...} | "textBody": str, "headers": {str: str}},
     "timing": {"startTime": {"seconds": int, "milliseconds": int} | epoch_ms,
                "endTime": ..., "timeToFirstToken": ms | null}}

``Helicone-*`` settings (user, properties, session, request id, omit flags, model override) come
from the logging request's own headers and from ``meta`` (which wins), read like the proxy reads
them. The provider request and response JSON become the bodies, so the consumer parses model,
usage and cost exactly as for a proxied call. HeliconeManualLogger always sends
``url: "custom-model-nopath"``: for ``/oai`` and ``/anthropic`` the provider's own URL is then
inferred from the request (``extra["target_url"] = "inferred"``), because the consumer picks the
wire format and the price list from it.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

from llmtap.capture.bodies import body_ref
from llmtap.capture.builder import build_log_record
from llmtap.capture.redaction import redact_headers
from llmtap.capture.tap import HeaderList, as_header_list, read_tap
from llmtap.ingest.built import Body, Ingested
from llmtap.ingest.errors import BadLog
from llmtap.ingest.ndjson import response_body
from llmtap.ingest.values import checked_url, decode_nested
from llmtap.record import BodyRef, Timing
from llmtap.stores.bodies.port import body_key

LogKind = Literal["custom", "oai", "anthropic"]
PROVIDERS: dict[LogKind, str] = {"custom": "custom", "oai": "openai", "anthropic": "anthropic"}
_OPENAI_BASE = "https://api.openai.com/v1"
_ANTHROPIC_MESSAGES = "https://api.anthropic.com/v1/messages"


class Instant(msgspec.Struct, kw_only=True):
    seconds: int
    milliseconds: float = 0


class LogTiming(msgspec.Struct, kw_only=True):
    startTime: Instant | float | None = None
    endTime: Instant | float | None = None
    timeToFirstToken: float | None = None


class ProviderRequest(msgspec.Struct, kw_only=True):
    url: str = "custom-model-nopath"
    json: dict[str, Any]
    meta: dict[str, str | int | float | bool] = {}


class ProviderResponse(msgspec.Struct, kw_only=True):
    status: int
    json: dict[str, Any] | list[Any] | None = None
    textBody: str | None = None
    headers: dict[str, str] = {}


class AsyncLog(msgspec.Struct, kw_only=True):
    providerRequest: ProviderRequest
    providerResponse: ProviderResponse
    timing: LogTiming | None = None


_decoder = msgspec.json.Decoder(AsyncLog)
_encoder = msgspec.json.Encoder()


def parse_async_log(body: bytes) -> AsyncLog:
    """The log in ``body``; ``BadLog`` naming the first problem (``... - at `$.timing` ``)."""
    try:
        return decode_nested(lambda: _decoder.decode(body), "the body")
    except msgspec.ValidationError as exc:
        raise BadLog(f"invalid log: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadLog(f"body is not JSON: {exc}") from None


def _epoch_ms(value: Instant | float | None, where: str) -> float | None:
    if value is None:
        return None
    ms = value.seconds * 1000 + value.milliseconds if isinstance(value, Instant) else value
    if not 0 <= ms < 1e14:  # epoch milliseconds: 0 .. year 5138
        raise BadLog(f"invalid log: {where} is not a time (epoch seconds/milliseconds)")
    return float(ms)


def _timing(timing: LogTiming | None, received_unix_ms: float) -> Timing:
    if timing is None:
        return Timing(start_unix_ms=received_unix_ms, total_ms=0.0)
    start = _epoch_ms(timing.startTime, "timing.startTime")
    end = _epoch_ms(timing.endTime, "timing.endTime")
    if start is None:
        start = end if end is not None else received_unix_ms
    if end is None:
        end = start
    if end < start:
        raise BadLog("invalid log: timing.endTime is before timing.startTime")
    ttft = timing.timeToFirstToken
    if ttft is not None and not 0 <= ttft < 1e14:
        raise BadLog("invalid log: timing.timeToFirstToken is not a time in milliseconds")
    return Timing(start_unix_ms=start, total_ms=round(end - start, 3), first_chunk_ms=ttft)


def _target_url(kind: LogKind, url: str, request: dict[str, Any]) -> tuple[str, bool]:
    """The provider URL the call went to, and whether it was inferred."""
    if url.lower().startswith(("http://", "https://")):
        return checked_url(url, "providerRequest.url"), False
    if kind == "anthropic":
        return _ANTHROPIC_MESSAGES, True
    if kind == "oai":
        model = request.get("model")
        if "messages" in request:
            path = "/chat/completions"
        elif "input" in request:
            is_embedding = isinstance(model, str) and "embed" in model
            path = "/embeddings" if is_embedding else "/responses"
        elif "prompt" in request:
            path = "/completions"
        else:
            path = ""
        return _OPENAI_BASE + path, True
    return url, False


def _status(status: int) -> tuple[int, str | None]:
    if status < 0:
        # the client's own outcome codes (HeliconeLogBuilder sends -3 when the call was cancelled)
        return 0, "client_cancelled" if status == -3 else f"client_status_{status}"
    if not 100 <= status <= 599:
        raise BadLog(f"invalid log: providerResponse.status {status} is not an HTTP status")
    return status, None


def build_async_log(
    log: AsyncLog,
    *,
    kind: LogKind,
    headers: HeaderList,
    org_id: str,
    key_hash: str,
    received_unix_ms: float | None = None,
) -> Ingested:
    """The record and bodies for one async log; ``headers`` are the logging request's own."""
    request = log.providerRequest
    response = log.providerResponse
    meta = {
        k: v if isinstance(v, str) else _encoder.encode(v).decode() for k, v in request.meta.items()
    }
    request_headers, tap = read_tap([headers, as_header_list(meta)])
    # the logging request's own headers are not the provider call's: keep only what meta said
    request_headers = {k: v for k, v in request_headers.items() if k in {m.lower() for m in meta}}
    timing = _timing(log.timing, received_unix_ms or time.time() * 1000)
    status, error = _status(response.status)
    target, inferred = _target_url(kind, request.url, request.json)
    request_id = tap.request_id
    bodies: list[Body] = []

    key = body_key(org_id, request_id, "request")
    request_ref, stored = body_ref(
        _encoder.encode(request.json),
        omit=tap.omit_request,
        content_type="application/json",
        key=key,
    )
    if stored is not None:
        bodies.append(Body(key, stored, "application/json"))

    data, content_type, reformatted = response_body(response.textBody, response.json, _encoder)
    response_ref: BodyRef | None = None
    if data is not None:
        key = body_key(org_id, request_id, "response")
        response_ref, stored = body_ref(
            data, omit=tap.omit_response, content_type=content_type, key=key
        )
        if stored is not None:
            bodies.append(Body(key, stored, content_type))

    extra: dict[str, str] = {}
    if inferred:
        extra["target_url"] = "inferred"
    if reformatted:
        extra["response_body"] = reformatted
    response_headers = redact_headers(as_header_list(response.headers))
    if "content-encoding" in response_headers:
        extra["response_decoded_from"] = response_headers["content-encoding"]
    if content_type is not None:
        # what the stored body is, which decides how the consumer reads it
        response_headers["content-type"] = content_type
    record = build_log_record(
        tap,
        source="async-log",
        provider=PROVIDERS[kind],
        method="POST",
        target_url=target,
        status=status,
        timing=timing,
        auth_key_hash=key_hash,
        org_id=org_id,
        request_headers=request_headers,
        response_headers=response_headers,
        request_body=request_ref,
        response_body=response_ref,
        streamed=content_type == "text/event-stream" or request.json.get("stream") is True,
        error=error,
        extra=extra,
    )
    return Ingested(record, bodies)
