"""The API application: ``create_app(context)`` builds it, with its routes, error answers and
OpenAPI document. Whoever creates the context owns the stores in it and closes them.
"""

from __future__ import annotations

from fastapi import FastAPI

from llmtap import __version__
from llmtap.api import helicone_query, metrics, requests
from llmtap.api.context import ApiContext
from llmtap.api.errors import install_error_handlers
from llmtap.api.ingest import ingest_router
from llmtap.api.openapi import DOCS_URL, OPENAPI_URL, install_openapi

DESCRIPTION = """Query and metrics API of llmtap, the LLM observability gateway.

Every call needs an llmtap API key (`Authorization: Bearer sk-llmtap-...` or `Helicone-Auth`)
and only ever sees the data of that key's organization. Errors are
`{"error": {"type": ..., "message": ...}}` (Helicone's query keeps its own `{"data", "error"}`).
"""


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="llmtap",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url=DOCS_URL,
        redoc_url=None,
    )
    app.state.llmtap = context
    install_error_handlers(app)
    app.include_router(requests.router)
    app.include_router(metrics.router)
    app.include_router(helicone_query.router)
    if context.ingestion is not None:
        app.include_router(ingest_router(context.ingestion))

    @app.get("/v1/health", tags=["health"], summary="Liveness (no key needed)")
    def health() -> dict[str, object]:
        return {"status": "ok", "metrics": context.metrics is not None}

    install_openapi(app)
    return app
