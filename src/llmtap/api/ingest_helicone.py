"""Helicone-compatible async logging: ``POST /custom/v1/log``, ``/oai/v1/log``,
``/anthropic/v1/log`` (what ``helicone-helpers``' ``HeliconeManualLogger`` sends).

The answer is 200 ``{"id": <request id>}`` with a ``Helicone-Id`` header, given only once the
log is in the queue; 400 names what is wrong with the body, 401 a bad key, 413 a body over
``max_ingest_body_bytes``, 503 a queue or body store that refused (nothing logged: retry).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from llmtap.api.ingest_http import EXPECTED, Ingestion, failure_response, in_thread
from llmtap.ingest.helicone import LogKind, build_async_log, parse_async_log


def helicone_log_router(ingestion: Ingestion) -> APIRouter:
    router = APIRouter(tags=["ingestion"])

    async def ingest(kind: LogKind, request: Request) -> JSONResponse:
        try:
            caller = await run_in_threadpool(ingestion.caller, request)
            body = await ingestion.read_body(request)

            def work() -> str:
                built = build_async_log(
                    parse_async_log(body),
                    kind=kind,
                    headers=request.headers.raw,
                    org_id=caller.org_id,
                    key_hash=caller.key_hash,
                )
                ingestion.publisher.publish([built])
                return built.record.request_id

            request_id = await in_thread(work)
        except EXPECTED as exc:
            return failure_response(exc)
        return JSONResponse({"id": request_id}, headers={"Helicone-Id": request_id})

    def route(kind: LogKind) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            return await ingest(kind, request)

        router.add_api_route(
            f"/{kind}/v1/log",
            endpoint,
            methods=["POST"],
            summary=f"Log a {kind} call made without the proxy (Helicone async logging)",
            name=f"helicone_log_{kind}",
        )

    for kind in ("custom", "oai", "anthropic"):
        route(kind)
    return router
