"""llmtap's errors as HTTP answers, in one place: every error body is
``{"error": {"type": ..., "message": ...}}``.

=====================  ====  ==========================================
FilterError            400   a malformed filter, cursor or parameter
RequestValidationError 400   the body or query does not fit the schema
Unauthorized           401   no key, unknown key, revoked key
BodyTimeout            408   the body did not arrive in time (``api.guard``)
BodyTooLarge           413   the body is over its route's cap (``api.guard``)
StoreUnavailable       503   a store is down: try again later
MetricsUnavailable     503   no analytics store configured or reachable
QueryBusy              503   every query slot is taken (with Retry-After)
StoreError             500   anything else a store refused
=====================  ====  ==========================================
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llmtap.api.auth import Unauthorized
from llmtap.api.query_gate import QueryBusy
from llmtap.errors import StoreError, StoreUnavailable
from llmtap.stores.filter import FilterError

log = logging.getLogger(__name__)


class MetricsUnavailable(Exception):
    """Metrics need the analytics store and it is not configured or not reachable."""


def error_response(status: int, kind: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"type": kind, "message": message}}, status_code=status, headers=headers
    )


def store_error_response(exc: StoreError) -> JSONResponse:
    """The answer for a store that failed (also used by ``api.guard``, outside the handlers)."""
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc)
        return error_response(503, "unavailable", str(exc))
    # the store's own text (engine error codes, file paths) stays in the server's log
    log.error("store error: %s", exc)
    return error_response(
        500, "store_error", "a store failed to answer this request; the server log has the details"
    )


_HTTP_KINDS = {
    400: "bad_request",
    404: "not_found",
    408: "timeout",
    413: "too_large",
    429: "too_many",
}


def _where(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


def install_error_handlers(app: FastAPI) -> None:
    async def on_filter(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(400, "bad_request", str(exc))

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        ]
        return error_response(400, "bad_request", "; ".join(problems) or "invalid request")

    async def on_unauthorized(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(401, "unauthorized", str(exc))

    async def on_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        return error_response(503, "unavailable", str(exc))

    async def on_busy(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, QueryBusy)
        response = error_response(503, "busy", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    async def on_store(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StoreError)
        return store_error_response(exc)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, kind, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    app.add_exception_handler(FilterError, on_filter)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Unauthorized, on_unauthorized)
    app.add_exception_handler(StoreUnavailable, on_unavailable)
    app.add_exception_handler(MetricsUnavailable, on_unavailable)
    app.add_exception_handler(QueryBusy, on_busy)
    app.add_exception_handler(StoreError, on_store)
    app.add_exception_handler(HTTPException, on_http)
