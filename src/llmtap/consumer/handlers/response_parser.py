"""ResponseParser: what the provider said back — model, finish reason and usage.

It picks the wire format from the endpoint the request parser found (``chat.completions``,
``responses``, ``embeddings``, ``messages``) and whether the body is an event stream, then lets
the family module read it. Nothing here raises for a bad body: a body that is missing, cut off,
compressed in a way we cannot read, or not what the endpoint promised leaves usage ``unknown``
and says why in ``ctx.notes["response"]``; a body that should be JSON but cannot be read (not
UTF-8, nested too deep, cut off, not an object) is also noted on the row
(``llmtap-response-parse-error``). A number is only ever the provider's own.

Notes left for later handlers:

* ``usage`` — the ``Usage`` read (with ``cache_write_1h``, which has no row column);
* ``price_context`` — ``service_tier`` / ``speed`` the provider reported, for price variants;
* ``response`` — ``{"stream", "complete", "events", "tool_calls", "error", "problem"}``;
* ``partial_usage`` — what a stream cut before its final usage had reported (never on the row).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from llmtap.capture.decode import COMPRESSED, inflate
from llmtap.consumer.context import Context
from llmtap.consumer.handlers.anthropic_messages import parse_messages_json, parse_messages_stream
from llmtap.consumer.handlers.carried import carried_response
from llmtap.consumer.handlers.json_body import TOO_DEEP, WRONG_SHAPE, read_json
from llmtap.consumer.handlers.openai_chat import parse_chat_json, parse_chat_stream
from llmtap.consumer.handlers.openai_embeddings import parse_embeddings_json
from llmtap.consumer.handlers.openai_responses import (
    parse_responses_json,
    parse_responses_stream,
)
from llmtap.consumer.handlers.sse import SseEvent, looks_like_sse, parse_sse
from llmtap.consumer.handlers.usage import ParsedResponse, dig, text
from llmtap.stores.notes import RESPONSE_PARSE_ERROR

NOTE_USAGE = "usage"
NOTE_PRICE_CONTEXT = "price_context"
NOTE_RESPONSE = "response"
NOTE_PARTIAL_USAGE = "partial_usage"

JsonParser = Callable[[Any], ParsedResponse]
StreamParser = Callable[[Iterable[SseEvent]], ParsedResponse]

_JSON: dict[str, JsonParser] = {
    "chat.completions": parse_chat_json,
    "responses": parse_responses_json,
    "embeddings": parse_embeddings_json,
    "messages": parse_messages_json,
}
_STREAM: dict[str, StreamParser] = {
    "chat.completions": parse_chat_stream,
    "responses": parse_responses_stream,
    "messages": parse_messages_stream,
}


class ResponseParser:
    name = "response"

    def __init__(self, max_decoded_bytes: int = 64 * 1024 * 1024) -> None:
        # a compressed body is inflated at most this far (a capture is never bigger than this)
        self._max_decoded = max_decoded_bytes

    def __call__(self, ctx: Context) -> None:
        note: dict[str, Any] = {"stream": False, "complete": False, "problem": None}
        ctx.notes[NOTE_RESPONSE] = note
        carried = carried_response(ctx.record.extra)
        if carried is not None:
            # logged without the provider's body (an OTel span): its numbers ride in the record
            _apply(ctx, carried, note)
            return
        ref = ctx.record.response_body
        if ref is not None and ref.truncated:
            note["problem"] = "truncated"
        if ctx.record.error:
            note["problem"] = ctx.record.error
        body = ctx.response_body
        if not body:
            note["problem"] = "omitted" if ref is not None and ref.omitted else "no_body"
            return
        # the proxy stores what it could inflate already, and says so
        decoded = "response_decoded_from" in ctx.record.extra
        encoding = None if decoded else _header(ctx.record.response_headers, "content-encoding")
        body, problem = self._decoded(body, encoding)
        if problem is not None:
            note["problem"] = problem
            return
        endpoint = ctx.row.endpoint or "other"
        if endpoint == "models":
            return  # a model list or lookup: no model run, no usage
        stream = _is_stream(body, ctx.record.response_headers)
        note["stream"] = stream
        if stream:
            events = parse_sse(body)
            family = endpoint if endpoint in _STREAM else _sniff_stream(events)
            if family is None:
                note["problem"] = note["problem"] or "unknown_format"
                return
            try:
                parsed = _STREAM[family](events)
            except RecursionError:  # one event's JSON nested past the interpreter's stack
                _unreadable(ctx, note, TOO_DEEP)
                return
        else:
            doc, problem = read_json(body)
            if problem is not None:
                note["problem"] = note["problem"] or problem
                if _meant_as_json(ctx, endpoint) and ref is not None and not ref.truncated:
                    ctx.row.properties[RESPONSE_PARSE_ERROR] = problem
                return
            if not isinstance(doc, dict) and endpoint in _JSON:
                _unreadable(ctx, note, WRONG_SHAPE)
                return
            family = endpoint if endpoint in _JSON else _sniff_json(doc)
            if family is None:
                note["problem"] = note["problem"] or "unknown_format"
                return
            parsed = _JSON[family](doc)
        _apply(ctx, parsed, note)

    def _decoded(self, body: bytes, encoding: str | None) -> tuple[bytes, str | None]:
        encoding = (encoding or "").strip().lower()
        if encoding in ("", "identity") and not body.startswith(b"\x1f\x8b"):
            return body, None
        if encoding in ("", "identity") or encoding in COMPRESSED:
            # raw deflate too (some servers); a capture cut mid-stream inflates to what arrived
            inflated = inflate(body, self._max_decoded, raw_deflate=True)
            if inflated is not None:
                return inflated.data, None
        if body.lstrip()[:1] in (b"{", b"[") or looks_like_sse(body):
            # labelled compressed but captured after decoding: readable as it is
            return body, None
        return body, f"undecodable_encoding:{encoding}" if encoding else "undecodable_encoding"


def _unreadable(ctx: Context, note: dict[str, Any], problem: str) -> None:
    note["problem"] = note["problem"] or problem
    ctx.row.properties[RESPONSE_PARSE_ERROR] = problem


def _meant_as_json(ctx: Context, endpoint: str) -> bool:
    """The provider answered a JSON endpoint or said the body is JSON (an HTML error page from
    a front proxy is not a parse failure of ours, unless it claims to be JSON)."""
    content_type = (_header(ctx.record.response_headers, "content-type") or "").lower()
    if content_type:
        return "json" in content_type
    return endpoint in _JSON


def _apply(ctx: Context, parsed: ParsedResponse, note: dict[str, Any]) -> None:
    row = ctx.row
    row.response_model = parsed.model or row.response_model
    row.finish_reason = parsed.finish_reason or row.finish_reason
    note["complete"] = parsed.complete
    note["events"] = parsed.events
    note["tool_calls"] = parsed.tool_calls
    note["error"] = parsed.error
    if parsed.price_context:
        ctx.notes[NOTE_PRICE_CONTEXT] = dict(parsed.price_context)
    if parsed.usage is not None and parsed.usage.known:
        parsed.usage.apply_to(row)
        ctx.notes[NOTE_USAGE] = parsed.usage
    elif parsed.partial_usage is not None:
        ctx.notes[NOTE_PARTIAL_USAGE] = parsed.partial_usage


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _is_stream(body: bytes, headers: Mapping[str, str]) -> bool:
    content_type = (_header(headers, "content-type") or "").lower()
    if "text/event-stream" in content_type:
        return True
    if "json" in content_type:
        return False
    return looks_like_sse(body)


def _sniff_json(doc: Any) -> str | None:
    """The family of a JSON body whose endpoint the request did not tell (async logs, proxies)."""
    kind = text(dig(doc, "object"))
    if kind == "chat.completion":
        return "chat.completions"
    if kind == "response":
        return "responses"
    data = dig(doc, "data")
    if kind == "list" and isinstance(data, list) and data and dig(data[0], "object") == "embedding":
        return "embeddings"
    if text(dig(doc, "type")) == "message":
        return "messages"
    return None


def _sniff_stream(events: list[SseEvent]) -> str | None:
    for event in events[:3]:
        if event.event.startswith("message_") or '"message_start"' in event.data:
            return "messages"
        if event.event.startswith("response.") or '"type":"response.' in event.data:
            return "responses"
        if "chat.completion.chunk" in event.data:
            return "chat.completions"
    return None
