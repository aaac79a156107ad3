"""What the ingestion routes share: the publisher, the key check, and reading a bounded body.

``Ingestion`` is created once at start (``Ingestion.open``) and passed to the route factories;
it owns its producer and body store and closes them. Bodies are read in chunks and refused with
413 as soon as they pass ``settings.max_ingest_body_bytes`` (compressed bodies are measured after
inflating, so a small gzip bomb cannot get through either).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from llmtap.api.auth import KeyResolver, Unauthorized
from llmtap.api.errors import error_response
from llmtap.capture.decode import COMPRESSED, encoding_name, inflate
from llmtap.ingest.errors import BadLog, LogTooLarge, UnsupportedMediaType
from llmtap.ingest.publisher import IngestPublisher, IngestUnavailable
from llmtap.ingest.values import decode_nested
from llmtap.keys import hash_key
from llmtap.queue.factory import open_producer
from llmtap.settings import Settings
from llmtap.stores.factory import open_body_store

RETRY_AFTER_S = "5"
T = TypeVar("T")


@dataclass
class Caller:
    org_id: str
    key_hash: str


class Ingestion:
    def __init__(self, publisher: IngestPublisher, keys: KeyResolver, max_body_bytes: int) -> None:
        self.publisher = publisher
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.spans_ignored = 0

    @classmethod
    def open(cls, settings: Settings, keys: KeyResolver) -> Ingestion:
        """Open a producer on ``settings.queue_url`` and the body store of ``settings``."""
        producer = open_producer(settings)
        try:
            bodies = open_body_store(settings.bodies_url)
        except BaseException:
            producer.close()
            raise
        publisher = IngestPublisher(producer, bodies, settings.topic)
        return cls(publisher, keys, settings.max_ingest_body_bytes)

    def close(self) -> None:
        self.publisher.close()

    def caller(self, request: Request) -> Caller:
        """The caller's organization; ``Unauthorized`` for a missing, unknown or revoked key."""
        authorization = request.headers.get("authorization")
        helicone_auth = request.headers.get("helicone-auth")
        org = self.keys.org_for(authorization, helicone_auth)
        return Caller(org, hash_key(authorization or helicone_auth or ""))

    async def read_body(self, request: Request) -> bytes:
        """The request body, inflated; ``LogTooLarge`` past the limit."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise LogTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise LogTooLarge(f"body is over the {limit}-byte limit")
            parts.append(chunk)
        body = b"".join(parts)
        encoding = encoding_name(request.headers.get("content-encoding"))
        if encoding in ("", "identity"):
            return body
        if encoding not in COMPRESSED:
            raise UnsupportedMediaType(f"content-encoding {encoding!r} is not supported")
        inflated = inflate(body, limit)
        if inflated is None:
            raise BadLog(f"body is not valid {encoding}")
        if inflated.over_limit:
            raise LogTooLarge(f"inflated body is over the {limit}-byte limit")
        return inflated.data


async def in_thread(work: Callable[[], T]) -> T:
    """``work`` off the event loop. Decoders say where JSON was nested too deeply; this catches
    a structure that passed them and overflows the stack later (encoding it back, say)."""
    return await run_in_threadpool(decode_nested, work, "the body")


EXPECTED = (Unauthorized, BadLog, IngestUnavailable)


def failure_response(exc: Unauthorized | BadLog | IngestUnavailable) -> JSONResponse:
    """The answer for an error the ingestion routes expect."""
    if isinstance(exc, Unauthorized):
        return error_response(401, "unauthorized", str(exc))
    if isinstance(exc, BadLog):
        kind = {413: "too_large", 415: "unsupported_media_type"}.get(exc.status, "bad_request")
        return error_response(exc.status, kind, str(exc))
    response = error_response(503, "unavailable", f"{exc}; nothing was logged, retry")
    response.headers["Retry-After"] = RETRY_AFTER_S
    return response
