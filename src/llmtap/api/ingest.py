"""Logging without the proxy, as one router: Helicone async logs and OTLP/HTTP traces.

``app.include_router(ingest_router(Ingestion.open(settings, keys)))`` mounts all four routes;
whoever opened the ``Ingestion`` closes it.
"""

from __future__ import annotations

from fastapi import APIRouter

from llmtap.api.ingest_helicone import helicone_log_router
from llmtap.api.ingest_http import Ingestion
from llmtap.api.ingest_otlp import otlp_traces_router

__all__ = ["Ingestion", "ingest_router"]


def ingest_router(ingestion: Ingestion) -> APIRouter:
    router = APIRouter()
    router.include_router(helicone_log_router(ingestion))
    router.include_router(otlp_traces_router(ingestion))
    return router
