"""``/webhooks``: the organization's webhooks, their state and delivery history; resume, delete.

Creating a webhook (its signing secret is shown once) is the API's or the CLI's
(docs/integrations.md); the page links there. Only the session's organization's webhooks: an id
of another organization is answered like a missing one (404) and nothing is done to it. Resume
and delete are POSTs with the CSRF token.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from llmtap.api.webhooks import delivery_json, webhook_json
from llmtap.dashboard.auth import Signed, Viewer, check_csrf, form_fields, viewer
from llmtap.dashboard.context import dashboard
from llmtap.stores.records.integrations import Webhook

router = APIRouter(include_in_schema=False)
HISTORY = 100


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
def webhooks_page(request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    pending = ctx.records.outbox.pending_counts(signed.org_id)
    hooks = [
        webhook_json(w, pending.get(w.target.id, 0))
        for w in ctx.records.integrations.webhooks(signed.org_id)
    ]
    return ctx.pages.render(
        request, "webhooks.html", {"viewer": signed, "page": "webhooks", "hooks": hooks}
    )


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
