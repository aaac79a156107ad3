"""``install_dashboard``: the dashboard's routes, error pages and headers on the API's app.

Called by ``api/app.create_app``; its paths are outside ``/v1/`` (except ``/v1/docs``), which
the API's key guard lets through to the session cookie check (``auth.py``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route

from llmtap.api.context import ApiContext
from llmtap.dashboard import (
    alerts,
    auth,
    export,
    keys,
    overview,
    posthog,
    properties,
    request_view,
    requests,
    sessions,
    users,
    webhook_new,
    webhooks,
)
from llmtap.dashboard.context import DashboardContext, dashboard
from llmtap.dashboard.docs import docs_router
from llmtap.dashboard.key_reveal import NewKey, NewWebhook, Reveals
from llmtap.dashboard.login_limit import LoginLimiter
from llmtap.dashboard.render import Pages
from llmtap.dashboard.security import SecurityHeaders
from llmtap.dashboard.static_files import PREFIX, StaticFiles
from llmtap.settings import Settings


def install_dashboard(
    app: FastAPI, context: ApiContext, settings: Settings, *, docs_url: str, openapi_url: str
) -> None:
    static = StaticFiles()
    app.router.routes.append(Route(PREFIX + "{name:path}", static.response, methods=["GET"]))
    pages = Pages(static)
    app.state.dashboard_pages = pages
    if context.records is not None:
        app.state.dashboard = DashboardContext(
            api=context,
            records=context.records,
            pages=pages,
            login_limiter=LoginLimiter(
                settings.dashboard_login_max_failures, settings.dashboard_login_window_s
            ),
            session_ttl_s=settings.dashboard_session_ttl_s,
            refresh_s=settings.dashboard_refresh_s,
            key_reveals=Reveals[NewKey](),
            webhook_reveals=Reveals[NewWebhook](),
        )
        # one router per page: the pages other engineers add go in this list
        for router in (
            auth.router,
            overview.router,
            requests.router,
            request_view.router,
            sessions.router,
            users.router,
            properties.router,
            keys.router,
            webhooks.router,
            webhook_new.router,
            posthog.router,
            alerts.router,
            export.router,
        ):
            app.include_router(router)
    app.include_router(docs_router(docs_url, openapi_url))
    app.add_exception_handler(auth.SignInNeeded, _sign_in_needed)
    app.add_exception_handler(auth.CsrfRefused, _csrf_refused)
    app.add_middleware(SecurityHeaders)


async def _sign_in_needed(request: Request, exc: Exception) -> Response:
    return auth.sign_in_needed_response(request)


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return dashboard(request).pages.render(
        request,
        "not_found.html",
        {
            "viewer": None,
            "page": "",
            "what": "This form was refused: it expired or came from another site."
            " Reload the page and try again.",
        },
        status_code=403,
    )
