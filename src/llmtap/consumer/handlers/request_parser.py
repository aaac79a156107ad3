"""RequestParser: what the caller asked for — endpoint, model and stream flag.

A request body that is not JSON (or was truncated at capture) is fine: the call was still made
and is still logged, only without a model. ``Helicone-Model-Override`` wins over the body. When a
body meant to be JSON cannot be read, the row says why (``llmtap-request-parse-error``).
"""

from __future__ import annotations

import re
from typing import Any

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.json_body import WRONG_SHAPE, read_json
from llmtap.stores.notes import REQUEST_PARSE_ERROR

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
        problem = None
        if ctx.request_body:
            ctx.request_json, problem = read_json(ctx.request_body)
        body = ctx.request_json if isinstance(ctx.request_json, dict) else {}
        if problem is None and ctx.request_json is not None and not _fits(ctx.request_json, body):
            problem = WRONG_SHAPE
        ref = ctx.record.request_body
        cut = ref is not None and ref.truncated  # llmtap's own cut at capture, not the client's
        if problem is not None and not cut and _meant_as_json(ctx, row.endpoint):
            row.properties[REQUEST_PARSE_ERROR] = problem
        if ctx.record.model_override:
            row.model = ctx.record.model_override
        else:
            model = body.get("model")
            row.model = model if isinstance(model, str) and model else None
        if body.get("stream") is True:
            row.streamed = True


_JSON_ENDPOINTS = frozenset({"chat.completions", "responses", "embeddings", "messages"})


def _meant_as_json(ctx: Context, endpoint: str) -> bool:
    """The body should be JSON: a JSON endpoint, or the client said so. A file upload or a form
    that is not JSON is no parse failure, so it is not noted."""
    if endpoint in _JSON_ENDPOINTS:
        return True
    for name, value in ctx.record.request_headers.items():
        if name.lower() == "content-type":
            return "json" in value.lower()
    return False


def _fits(doc: Any, body: dict[str, Any]) -> bool:
    """A request document has the shape every provider's API takes: an object, and its
    ``messages`` (where present) a list."""
    if not isinstance(doc, dict):
        return False
    messages = body.get("messages")
    return messages is None or isinstance(messages, list)
