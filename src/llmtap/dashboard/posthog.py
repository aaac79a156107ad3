"""The PostHog section of the Webhooks page: set, replace or remove the organization's project.

``POST /integrations/posthog`` saves host and project key, held to the API's rules
(``llmtap.api.integration_rules.checked_posthog``: the address rule, no whitespace in the key);
``POST /integrations/posthog/delete`` removes it. Both need the CSRF token. The key is
write-only: the page shows its last four characters, and a refused form is shown again with the
host only. The project is the session's organization's; there is no id to hand-edit.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from llmtap.api.integration_rules import SettingRefused, checked_posthog
from llmtap.dashboard.auth import check_csrf, form_fields, viewer
from llmtap.dashboard.context import DashboardContext, dashboard
from llmtap.dashboard.webhooks import list_page

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store"}
MAX_HOST_REDISPLAY = 4096


def _save(ctx: DashboardContext, org_id: str, host: str, api_key: str) -> None:
    """Blocking: the address rule resolves the host name."""
    project = checked_posthog(host, api_key, allow_private=ctx.api.outbox_allow_private)
    ctx.records.integrations.set_posthog(org_id, project.host, project.api_key)


@router.post("/integrations/posthog")
async def set_project(request: Request) -> Response:
    ctx = dashboard(request)
    signed = await run_in_threadpool(viewer, request)
    fields = await form_fields(request)
    check_csrf(request, signed, fields)
    host = fields.get("host", "")
    try:
        await run_in_threadpool(_save, ctx, signed.org_id, host, fields.get("api_key", ""))
    except SettingRefused as exc:
        return await run_in_threadpool(
            list_page,
            request,
            signed,
            posthog_host=host[:MAX_HOST_REDISPLAY],
            posthog_error=str(exc),
            status=400,
        )
    return RedirectResponse("/webhooks?posthog=saved#posthog", status_code=303, headers=NO_STORE)


@router.post("/integrations/posthog/delete")
async def remove_project(request: Request) -> Response:
    ctx = dashboard(request)
    signed = await run_in_threadpool(viewer, request)
    check_csrf(request, signed, await form_fields(request))
    if not await run_in_threadpool(ctx.records.integrations.delete_posthog, signed.org_id):
        return ctx.pages.render(
            request,
            "not_found.html",
            {
                "viewer": signed,
                "page": "webhooks",
                "what": "Your organization has no PostHog project to remove.",
            },
            status_code=404,
        )
    return RedirectResponse("/webhooks?posthog=removed#posthog", status_code=303, headers=NO_STORE)
