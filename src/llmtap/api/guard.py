"""What one request may cost before any route runs: a pure-ASGI middleware in front of FastAPI.

The API shares its process (and the GIL) with the consumer in ``llmtap serve``, so a request
must not be able to make the process read or hold much on its behalf:

* the key of an API path (``/v1/...``) is checked from the headers alone, before a byte of the body is read: a caller
  without a valid key gets the same 401 the routes give, and the connection is closed instead of
  draining whatever body it announced;
* the body is capped per route (``max_query_body_bytes`` for queries, ``max_ingest_body_bytes``
  for the ingestion routes): a larger ``Content-Length`` is answered 413 at once, and a chunked or
  streamed body gets 413 as soon as its running count passes the cap, without buffering the rest;
* the whole body must arrive within ``api_body_read_timeout_s`` (408).

Refusals raised while a route reads the body are ``HTTPException``s, so FastAPI's body parsing
lets them through to the app's error handlers and the answer has the API's usual shape.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
import anyio.to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmtap.api.auth import KeyResolver, Unauthorized
from llmtap.api.errors import error_response, store_error_response
from llmtap.errors import StoreError

CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class GuardLimits:
    public_paths: frozenset[str]
    """Paths answered without a key (health, the OpenAPI document and its viewer)."""
    key_prefix: str
    """Paths under it need a key (the API, ``/v1/``); the others are the dashboard's, which
    signs people in with a session cookie instead (``llmtap.dashboard.auth``). Body caps apply
    to every path."""
    ingest_paths: frozenset[str]
    """Paths whose bodies may be up to ``max_ingest_body_bytes``; all others ``max_query_body_bytes``."""
    max_query_body_bytes: int
    max_ingest_body_bytes: int
    body_read_timeout_s: float

    def needs_key(self, path: str) -> bool:
        api = path.startswith(self.key_prefix) or path in self.ingest_paths
        return api and path not in self.public_paths


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body is over the {limit}-byte limit", headers=CLOSE)


class BodyTimeout(HTTPException):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, f"the body did not arrive within {timeout_s:g} s", headers=CLOSE)


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    # the HTTP parser has already refused anything but ASCII digits; isascii keeps int() safe
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 18 else 1 << 62


def _has_body(headers: Headers) -> bool:
    return (
        _declared_length(headers) not in (None, 0)
        or "chunked" in headers.get("transfer-encoding", "").lower()
    )


class RequestGuard:
    def __init__(self, app: ASGIApp, *, keys: KeyResolver, limits: GuardLimits) -> None:
        self.app = app
        self.keys = keys
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        if self.limits.needs_key(path):
            try:
                await anyio.to_thread.run_sync(
                    self.keys.org_for, headers.get("authorization"), headers.get("helicone-auth")
                )
            except Unauthorized as exc:
                await self._refuse(scope, receive, send, 401, "unauthorized", str(exc), headers)
                return
            except StoreError as exc:  # the records store is down: 503, as the routes say it
                await store_error_response(exc)(scope, receive, send)
                return
        if path in self.limits.ingest_paths:
            limit = self.limits.max_ingest_body_bytes
        else:
            limit = self.limits.max_query_body_bytes
        declared = _declared_length(headers)
        if declared is not None and declared > limit:
            message = f"body of {declared} bytes is over the {limit}-byte limit"
            await self._refuse(scope, receive, send, 413, "too_large", message, headers)
            return
        if not _has_body(headers):
            await self.app(scope, receive, send)
            return
        body = _BoundedBody(receive, limit, self.limits.body_read_timeout_s)
        await self.app(scope, body.receive, body.closing_send(send))

    @staticmethod
    async def _refuse(
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        kind: str,
        message: str,
        headers: Headers,
    ) -> None:
        response = error_response(status, kind, message)
        if _has_body(headers):
            # the body was not read: close rather than drain what the client still sends
            response.headers.update(CLOSE)
        await response(scope, receive, send)


class _BoundedBody:
    """The request's ``receive``, counting body bytes against ``limit`` and a deadline."""

    def __init__(self, receive: Receive, limit: int, timeout_s: float) -> None:
        self._receive = receive
        self._limit = limit
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._size = 0
        self.complete = False

    async def receive(self) -> Message:
        if self.complete:  # after the body: disconnect listeners wait here as long as they like
            return await self._receive()
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise BodyTimeout(self._timeout_s)
        try:
            with anyio.fail_after(remaining):
                message = await self._receive()
        except TimeoutError:
            raise BodyTimeout(self._timeout_s) from None
        if message["type"] != "http.request":
            self.complete = True
            return message
        self._size += len(message.get("body", b""))
        if self._size > self._limit:
            raise BodyTooLarge(self._limit)
        if not message.get("more_body", False):
            self.complete = True
        return message

    def closing_send(self, send: Send) -> Send:
        """``send``, asking the server to close the connection when the answer starts before the
        body was read to its end (a route that ignores it, or a refusal): otherwise the server
        would go on reading and discarding whatever the client still sends."""

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and not self.complete:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        return wrapped
