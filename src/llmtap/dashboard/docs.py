"""``/v1/docs``: Swagger UI for the OpenAPI document, from vendored files (no CDN: it works
offline). FastAPI's own page starts Swagger with an inline script, which the CSP forbids; this
page loads ``static/docs.js`` instead, so it runs under the same policy as every other page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmtap.dashboard.render import Pages

SWAGGER_DIR = "vendor/swagger-ui-dist-5.35.0"


def docs_router(docs_url: str, openapi_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(docs_url)
    def docs(request: Request) -> Response:
        pages: Pages = request.app.state.dashboard_pages
        context = {
            "openapi_url": openapi_url,
            "swagger_js": pages.static.url(f"{SWAGGER_DIR}/swagger-ui-bundle.js"),
            "swagger_css": pages.static.url(f"{SWAGGER_DIR}/swagger-ui.css"),
        }
        return pages.render(request, "docs.html", context)

    return router
