"""RequestParser: what the caller asked for — endpoint, model and stream flag.

A request body that is not JSON (or was truncated at capture) is fine: the call was still made
and is still logged, only without a model. ``Helicone-Model-Override`` wins over the body.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from llmtap.consumer.context import Context

# Checked against the end of the upstream path, so prefixes (``/v1``, ``/openai/deployments/x``,
# a route's base path) do not matter. ``/models/<id>`` is a lookup; Gemini's
# ``/models/<id>:generateContent`` is not, hence no ``:`` in the id.
_ENDPOINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/chat/completions$"), "chat.completions"),
    (re.compile(r"/responses(/[^/]+)*$"), "responses"),
    (re.compile(r"/embeddings$"), "embeddings"),
    (re.compile(r"/messages$"), "messages"),
    (re.compile(r"/models(/[^/:]+)?$"), "models"),
)


def endpoint_for(path: str) -> str:
    path = path.rstrip("/")
    for pattern, endpoint in _ENDPOINTS:
        if pattern.search(path):
            return endpoint
    return "other"


class RequestParser:
    name = "request"

    def __call__(self, ctx: Context) -> None:
        row = ctx.row
        row.endpoint = endpoint_for(row.path)
        ctx.request_json = _parse_json(ctx.request_body)
        body = ctx.request_json if isinstance(ctx.request_json, dict) else {}
        if ctx.record.model_override:
            row.model = ctx.record.model_override
        else:
            model = body.get("model")
            row.model = model if isinstance(model, str) and model else None
        if body.get("stream") is True:
            row.streamed = True


def _parse_json(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
