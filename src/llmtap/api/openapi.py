"""The published OpenAPI document (``GET /v1/openapi.json``, browsable at ``/v1/docs``).

FastAPI derives paths and schemas from the routes; this adds what it cannot know: that every data
route needs an llmtap key, sent as a bearer token (or in ``Helicone-Auth``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

OPENAPI_URL = "/v1/openapi.json"
DOCS_URL = "/v1/docs"
_PUBLIC_PATHS = {"/v1/health"}


def install_openapi(app: FastAPI) -> None:
    def schema() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = document.setdefault("components", {})
        components["securitySchemes"] = {
            "llmtapKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "an llmtap API key: `Authorization: Bearer sk-llmtap-...`",
            },
            "heliconeAuth": {
                "type": "apiKey",
                "in": "header",
                "name": "Helicone-Auth",
                "description": "the same key, Helicone-style: `Helicone-Auth: Bearer sk-llmtap-...`",
            },
        }
        for path, operations in document.get("paths", {}).items():
            if path in _PUBLIC_PATHS:
                continue
            for operation in operations.values():
                operation["security"] = [{"llmtapKey": []}, {"heliconeAuth": []}]
        app.openapi_schema = document
        return document

    app.openapi = schema  # type: ignore[method-assign]
