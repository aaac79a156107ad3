"""Routing, auth and knobs: turns one received request into one fully decided reply."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec

from llmtap.testing.mock_anthropic import count_tokens, messages
from llmtap.testing.mock_canned import CannedReplies
from llmtap.testing.mock_embeddings import embeddings
from llmtap.testing.mock_errors import (
    anthropic_error,
    anthropic_status,
    openai_error,
    openai_status,
)
from llmtap.testing.mock_http import Ids, ReceivedRequest, Reply, RequestLog
from llmtap.testing.mock_knobs import MAX_FAIL_KEYS, KnobError, Knobs, parse_knobs
from llmtap.testing.mock_models import anthropic_models, openai_models
from llmtap.testing.mock_openai import chat_completions
from llmtap.testing.mock_openai_responses import responses

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Knobs, Ids], Reply]

_OPENAI_POST: dict[str, Handler] = {
    "/v1/chat/completions": chat_completions,
    "/v1/responses": responses,
    "/v1/embeddings": lambda body, _knobs, _ids: embeddings(body),
}
_ANTHROPIC_POST: dict[str, Handler] = {
    "/v1/messages": messages,
    "/v1/messages/count_tokens": lambda body, _knobs, _ids: count_tokens(body),
}
_MODELS = "/v1/models"

_OPENAI_STATIC = (
    b"openai-version: 2020-10-01\r\n"
    b"openai-organization: user-llmtap-mock\r\n"
    b"x-ratelimit-limit-requests: 10000\r\n"
    b"x-ratelimit-remaining-requests: 9999\r\n"
    b"x-ratelimit-limit-tokens: 10000000\r\n"
    b"x-ratelimit-remaining-tokens: 9999000\r\n"
)
_ANTHROPIC_STATIC = (
    b"anthropic-organization-id: 00000000-0000-4000-8000-11a7a90c0000\r\n"
    b"anthropic-ratelimit-requests-limit: 4000\r\n"
    b"anthropic-ratelimit-requests-remaining: 3999\r\n"
)


def is_anthropic(request: ReceivedRequest) -> bool:
    """Which provider's shape to answer in: Anthropic's paths and SDK headers, else OpenAI's."""
    return request.path.startswith("/v1/messages") or "anthropic-version" in request.headers


class MockApp:
    """Answers requests like OpenAI and Anthropic would; pure CPU work, no I/O."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        chunk_delay_ms: float = 0.0,
        requests: RequestLog | None = None,
        canned: CannedReplies | None = None,
    ) -> None:
        self._latency_ms = latency_ms
        self._chunk_delay_ms = chunk_delay_ms
        self._requests = requests
        self._canned = canned or CannedReplies()
        self._ids = Ids()
        self._failed: OrderedDict[str, int] = OrderedDict()
        """``x-mock-fail-key`` → requests failed so far (only touched on the server's loop)."""
        self.internal_errors = 0
        """Requests answered with a 500 because the mock itself failed (a bug in the mock)."""

    def handle(self, request: ReceivedRequest) -> Reply:
        if self._requests is not None:
            self._requests.add(request)
        canned = self._canned.take(request.path)
        if canned is not None:
            return canned.reply()
        anthropic = is_anthropic(request)
        knobs = Knobs(latency_ms=self._latency_ms, chunk_delay_ms=self._chunk_delay_ms)
        try:
            knobs = parse_knobs(request.headers, self._latency_ms, self._chunk_delay_ms)
            failed = self._fails(knobs, anthropic)
            reply = failed if failed is not None else self._answer(request, knobs, anthropic)
        except KnobError as exc:
            reply = anthropic_error(400, str(exc)) if anthropic else openai_error(400, str(exc))
        except Exception:  # the mock's own bug: answer like a provider outage, and say so
            self.internal_errors += 1
            log.exception("mock upstream failed on %s %s", request.method, request.path)
            reply = anthropic_status(500) if anthropic else openai_status(500)
        reply.latency_s = knobs.latency_ms / 1000.0
        reply.chunk_delay_s = knobs.chunk_delay_ms / 1000.0
        reply.drop_after = knobs.drop_after_chunks
        if knobs.retry_after is not None:
            reply.headers += b"retry-after: %b\r\n" % knobs.retry_after.encode("latin-1")
        request_id = self._ids.next("req_")
        if anthropic:
            reply.headers += b"request-id: %b\r\n%b" % (request_id.encode(), _ANTHROPIC_STATIC)
        else:
            reply.headers += b"x-request-id: %b\r\nopenai-processing-ms: %d\r\n%b" % (
                request_id.encode(),
                int(knobs.latency_ms),
                _OPENAI_STATIC,
            )
        return reply

    def _fails(self, knobs: Knobs, anthropic: bool) -> Reply | None:
        """``x-mock-fail-first: n``: the first n requests with the same ``x-mock-fail-key`` get
        ``x-mock-fail-status`` (default 500; 0 hangs up without answering), the rest answer."""
        if knobs.fail_first <= 0:
            return None
        key = knobs.fail_key
        count = self._failed.pop(key, 0)
        self._failed[key] = count + 1
        while len(self._failed) > MAX_FAIL_KEYS:
            self._failed.popitem(last=False)
        if count >= knobs.fail_first:
            return None
        if knobs.fail_status == 0:
            return Reply(status=0, hang_up=True)
        status = knobs.fail_status
        return anthropic_status(status) if anthropic else openai_status(status)

    def _answer(self, request: ReceivedRequest, knobs: Knobs, anthropic: bool) -> Reply:
        method, path = request.method, request.path
        if method == "GET" and path == "/health":
            return Reply(status=200, body=b'{"status":"ok"}')
        handler: Handler | None = None
        model_id: str | None = None
        listing = False
        if method == "POST":
            handler = (_ANTHROPIC_POST if anthropic else _OPENAI_POST).get(path)
        elif method == "GET" and (path == _MODELS or path.startswith(_MODELS + "/")):
            listing = True
            model_id = path[len(_MODELS) + 1 :] or None
        if handler is None and not listing:
            return _not_found(request, anthropic)
        denied = _check_auth(request, anthropic)
        if denied is not None:
            return denied
        if knobs.status is not None:
            return anthropic_status(knobs.status) if anthropic else openai_status(knobs.status)
        if listing:
            return anthropic_models(model_id) if anthropic else openai_models(model_id)
        assert handler is not None
        body = _json_object(request.body)
        if body is None:
            if anthropic:
                return anthropic_error(400, "There was an error parsing the body of your request.")
            return openai_error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.)",
            )
        return handler(body, knobs, self._ids)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def _check_auth(request: ReceivedRequest, anthropic: bool) -> Reply | None:
    headers = request.headers
    if anthropic:
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not headers.get("x-api-key") and not bearer:
            return anthropic_error(401, "x-api-key header is required")
        if not headers.get("anthropic-version"):
            return anthropic_error(400, "anthropic-version: header is required")
        return None
    auth = headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    return None


def _not_found(request: ReceivedRequest, anthropic: bool) -> Reply:
    if anthropic:
        return anthropic_error(404, "Not Found")
    return openai_error(404, f"Invalid URL ({request.method} {request.path})")
