"""``/webhooks``: the organization's webhooks, their state and delivery history; resume, delete;
and the page's forms: a new webhook (``webhook_new.py``) and the PostHog project (``posthog.py``).

Only the session's organization's webhooks: an id of another organization is answered like a
missing one (404) and nothing is done to it. Resume and delete are POSTs with the CSRF token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from llmtap.api.integration_rules import MAX_FILTERS
from llmtap.api.posthog import project_json
from llmtap.api.webhooks import delivery_json, webhook_json
from llmtap.dashboard.auth import Signed, Viewer, check_csrf, form_fields, viewer
from llmtap.dashboard.context import dashboard
from llmtap.stores.records.integrations import Webhook

router = APIRouter(include_in_schema=False)
HISTORY = 100
POSTHOG_MESSAGES = {
    "saved": "PostHog project saved: every call that names no project of its own is exported.",
    "removed": "PostHog project removed: calls are no longer exported to it.",
}


@dataclass(frozen=True, slots=True)
class WebhookForm:
    """What was typed into the new-webhook form, shown again when it is refused."""

    url: str = ""
    sample_rate: str = "100"
    filters: str = ""
    """One ``name=value`` a line."""


def list_page(
    request: Request,
    signed: Viewer,
    *,
    form: WebhookForm | None = None,
    error: str | None = None,
    posthog_host: str | None = None,
    posthog_error: str | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    """The Webhooks page; a refused form is shown again with its error (``status`` 400)."""
    ctx = dashboard(request)
    pending = ctx.records.outbox.pending_counts(signed.org_id)
    hooks = [
        webhook_json(w, pending.get(w.target.id, 0))
        for w in ctx.records.integrations.webhooks(signed.org_id)
    ]
    project = ctx.records.integrations.posthog(signed.org_id)
    shown = project_json(project) if project is not None else None
    return ctx.pages.render(
        request,
        "webhooks.html",
        {
            "viewer": signed,
            "page": "webhooks",
            "hooks": hooks,
            "form": form or WebhookForm(),
            "error": error,
            "max_filters": MAX_FILTERS,
            "max_hooks": ctx.api.webhooks_max_per_org,
            "posthog": shown,
            "posthog_host": posthog_host if posthog_host is not None else "",
            "posthog_error": posthog_error,
            "message": message,
        },
        status_code=status,
    )


def _owned(request: Request, org_id: str, webhook_id: str) -> Webhook | None:
    if len(webhook_id) > 64:
        return None
    hooks = dashboard(request).records.integrations.webhooks(org_id)
    return next((w for w in hooks if w.target.id == webhook_id), None)


def _not_found(request: Request, signed: Viewer) -> Response:
    return dashboard(request).pages.render(
        request,
        "not_found.html",
        {
            "viewer": signed,
            "page": "webhooks",
            "what": "No webhook with this id in your organization.",
        },
        status_code=404,
    )


@router.get("/webhooks")
def webhooks_page(request: Request, signed: Signed, posthog: str = "") -> Response:
    return list_page(request, signed, message=POSTHOG_MESSAGES.get(posthog))


@router.get("/webhooks/{webhook_id}")
def webhook_page(webhook_id: str, request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    found = _owned(request, signed.org_id, webhook_id)
    if found is None:
        return _not_found(request, signed)
    pending = ctx.records.outbox.pending_counts(signed.org_id).get(webhook_id, 0)
    history = ctx.records.outbox.history(signed.org_id, webhook_id, HISTORY)
    return ctx.pages.render(
        request,
        "webhook_view.html",
        {
            "viewer": signed,
            "page": "webhooks",
            "hook": webhook_json(found, pending),
            "deliveries": [delivery_json(d) for d in history],
        },
    )


async def _act(request: Request, webhook_id: str, action: str) -> Response:
    ctx = dashboard(request)
    signed = await run_in_threadpool(viewer, request)
    check_csrf(request, signed, await form_fields(request))
    found = await run_in_threadpool(_owned, request, signed.org_id, webhook_id)
    if found is None:
        return await run_in_threadpool(_not_found, request, signed)
    if action == "resume":
        now_ms = int(time.time() * 1000)
        await run_in_threadpool(ctx.records.outbox.resume, signed.org_id, webhook_id, now_ms)
        return RedirectResponse(f"/webhooks/{webhook_id}", status_code=303)
    await run_in_threadpool(ctx.records.integrations.delete_webhook, signed.org_id, webhook_id)
    return RedirectResponse("/webhooks", status_code=303)


@router.post("/webhooks/{webhook_id}/resume")
async def resume(webhook_id: str, request: Request) -> Response:
    return await _act(request, webhook_id, "resume")


@router.post("/webhooks/{webhook_id}/delete")
async def delete(webhook_id: str, request: Request) -> Response:
    return await _act(request, webhook_id, "delete")
