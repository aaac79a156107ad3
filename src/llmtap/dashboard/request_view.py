"""``/requests/<id>``: one call — the conversation as messages, the raw request and response
(pretty-printed JSON, cut for display with a link to the whole body), the stored headers (already
redacted when the call was captured), timings, tokens by kind, its cost and where the price
came from, its prompt, feedback and scores. ``/requests/<id>/body/<kind>`` is the whole body as plain text.

A request id of another organization is answered exactly like a missing one (404).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from llmtap.api.rows import nano_to_usd
from llmtap.dashboard.auth import Signed
from llmtap.dashboard.context import DashboardContext, dashboard
from llmtap.dashboard.conversation import (
    Message,
    request_messages,
    response_messages,
    stream_messages,
)
from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import FEEDBACK

router = APIRouter(include_in_schema=False)

PARSE_MAX_BYTES = 4 * 1024 * 1024
"""Bodies up to this size are parsed into messages; larger ones are only linked."""
DISPLAY_MAX_CHARS = 200_000
"""Raw JSON shown on the page up to this many characters (the link has the rest)."""
_JSON_MAX_DEPTH = 100
_CHUNK = 64 * 1024
RAW_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "no-store",
    "Content-Disposition": "inline",
}


@dataclass(slots=True)
class BodyShown:
    status: str
    """``stored``, ``omitted``, ``none``, ``missing`` or ``too_large``."""
    size: int = 0
    text: str = ""
    truncated: bool = False
    parsed: Any = None
    messages: list[Message] = field(default_factory=list)


def _read(store: BodyStore, key: str | None, omitted: bool) -> tuple[str, bytes]:
    if omitted:
        return "omitted", b""
    if key is None:
        return "none", b""
    try:
        stream = store.open_stream(key)
    except KeyError:
        return "missing", b""
    try:
        data = stream.read(PARSE_MAX_BYTES + 1)
    finally:
        stream.close()
    return ("too_large" if len(data) > PARSE_MAX_BYTES else "stored"), data


def _show(status: str, data: bytes, kind: str, streamed: bool) -> BodyShown:
    shown = BodyShown(status, len(data))
    if status != "stored":
        if status == "too_large":
            shown.text = data[:DISPLAY_MAX_CHARS].decode("utf-8", "replace")
            shown.truncated = True
        return shown
    text = data.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
        pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        parsed, pretty = None, text
    shown.parsed = parsed
    shown.truncated = len(pretty) > DISPLAY_MAX_CHARS
    shown.text = pretty[:DISPLAY_MAX_CHARS]
    if kind == "request":
        shown.messages = request_messages(parsed)
    elif parsed is not None:
        shown.messages = response_messages(parsed)
    elif streamed or "data:" in text[:200]:
        shown.messages = stream_messages(text)
    return shown


def _own_row(ctx: DashboardContext, org_id: str, request_id: str) -> RequestRow | None:
    if len(request_id) > 1024 or "\x00" in request_id:
        return None
    return ctx.api.search.get(org_id, request_id)


def _not_found(ctx: DashboardContext, request: Request, signed: Signed) -> Response:
    return ctx.pages.render(
        request,
        "not_found.html",
        {"viewer": signed, "page": "requests", "what": "No logged call with this id."},
        status_code=404,
    )


@router.get("/requests/{request_id}")
def request_view(request_id: str, request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    row = _own_row(ctx, signed.org_id, request_id)
    if row is None:
        return _not_found(ctx, request, signed)
    store = ctx.api.search.bodies
    shown = {
        "request": _show(
            *_read(store, row.request_body_key, row.request_omitted), "request", row.streamed
        ),
        "response": _show(
            *_read(store, row.response_body_key, row.response_omitted), "response", row.streamed
        ),
    }
    tokens = {
        "input": row.input_tokens,
        "output": row.output_tokens,
        "total": row.total_tokens,
        "cache read": row.cache_read_tokens,
        "cache write": row.cache_write_tokens,
        "reasoning": row.reasoning_tokens,
        "audio input": row.audio_input_tokens,
        "audio output": row.audio_output_tokens,
    }
    scores = ctx.api.search.scores_of(signed.org_id, [row]).get(row.request_id, [])
    context: dict[str, Any] = {
        "viewer": signed,
        "page": "requests",
        "row": row,
        "scores": [s for s in scores if s.name != FEEDBACK],
        "feedback": next((bool(s.value) for s in scores if s.name == FEEDBACK), None),
        "bodies": shown,
        "tokens": tokens,
        "cost_usd": nano_to_usd(row.cost_nano_usd),
        "conversation": [*shown["request"].messages, *shown["response"].messages],
        "display_max": DISPLAY_MAX_CHARS,
    }
    return ctx.pages.render(request, "request_view.html", context)


@router.get("/requests/{request_id}/body/{kind}")
def raw_body(
    request_id: str, kind: Literal["request", "response"], request: Request, signed: Signed
) -> Response:
    ctx = dashboard(request)
    row = _own_row(ctx, signed.org_id, request_id)
    if row is None:
        return _not_found(ctx, request, signed)
    key = row.request_body_key if kind == "request" else row.response_body_key
    omitted = row.request_omitted if kind == "request" else row.response_omitted
    if omitted or key is None:
        return Response("no body stored", media_type="text/plain", headers=RAW_HEADERS)
    try:
        stream = ctx.api.search.bodies.open_stream(key)
    except KeyError:
        return Response("body missing", status_code=404, media_type="text/plain")

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := stream.read(_CHUNK):
                yield chunk
        finally:
            stream.close()

    # text/plain with nosniff: whatever the body holds, the browser shows it as text
    return StreamingResponse(chunks(), media_type="text/plain; charset=utf-8", headers=RAW_HEADERS)
