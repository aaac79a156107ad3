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
    # the routes themselves, not include_router: FastAPI (0.165) wraps an included router in an
    # object without a ``path``, and the app's request guard reads these routes' paths to give
    # them the ingestion body limit (with no paths, every log over 1 MiB was refused 413)
    router.routes.extend(helicone_log_router(ingestion).routes)
    router.routes.extend(otlp_traces_router(ingestion).routes)
    return router
