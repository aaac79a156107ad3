"""The API application: ``create_app(context)`` builds it, with its routes, error answers and
OpenAPI document. Whoever creates the context owns the stores in it and closes them.
"""

from __future__ import annotations

from fastapi import FastAPI

from llmtap import __version__
from llmtap.api import alerts, helicone_query, metrics, posthog, requests, scores, webhooks
from llmtap.api.context import ApiContext
from llmtap.api.errors import install_error_handlers
from llmtap.api.guard import GuardLimits, RequestGuard
from llmtap.api.ingest import ingest_router
from llmtap.api.openapi import DOCS_URL, OPENAPI_URL, install_openapi
from llmtap.dashboard.mount import install_dashboard
from llmtap.settings import Settings

DESCRIPTION = """Query and metrics API of llmtap, the LLM observability gateway.

Every call needs an llmtap API key (`Authorization: Bearer sk-llmtap-...` or `Helicone-Auth`)
and only ever sees the data of that key's organization. Errors are
`{"error": {"type": ..., "message": ...}}` (Helicone's query keeps its own `{"data", "error"}`).
"""


HEALTH_URL = "/v1/health"


def create_app(context: ApiContext, settings: Settings) -> FastAPI:
    app = FastAPI(
        title="llmtap",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url=None,  # served by the dashboard from vendored files (dashboard/docs.py)
        redoc_url=None,
    )
    app.state.llmtap = context
    install_error_handlers(app)
    app.include_router(requests.router)
    app.include_router(metrics.router)
    app.include_router(helicone_query.router)
    app.include_router(scores.router)
    app.include_router(webhooks.router)
    app.include_router(posthog.router)
    app.include_router(alerts.router)
    ingest_paths: set[str] = set()
    if context.ingestion is not None:
        ingestion = ingest_router(context.ingestion)
        ingest_paths = {getattr(route, "path", "") for route in ingestion.routes}
        app.include_router(ingestion)

    @app.get(HEALTH_URL, tags=["health"], summary="Liveness (no key needed)")
    def health() -> dict[str, object]:
        return {"status": "ok", "metrics": context.metrics is not None}

    install_openapi(app)
    public = {HEALTH_URL, OPENAPI_URL, DOCS_URL, app.swagger_ui_oauth2_redirect_url or DOCS_URL}
    limits = GuardLimits(
        public_paths=frozenset(public),
        key_prefix="/v1/",
        ingest_paths=frozenset(ingest_paths),
        max_query_body_bytes=settings.max_query_body_bytes,
        max_ingest_body_bytes=settings.max_ingest_body_bytes,
        body_read_timeout_s=settings.api_body_read_timeout_s,
    )
    app.add_middleware(RequestGuard, keys=context.keys, limits=limits)
    # after the guard, so its headers (CSP...) are on the guard's refusals too
    install_dashboard(app, context, settings, docs_url=DOCS_URL, openapi_url=OPENAPI_URL)
    return app
