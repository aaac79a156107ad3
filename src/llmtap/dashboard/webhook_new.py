"""``POST /webhooks``: a new webhook from the Webhooks page's form; its signing secret shown once.

The form is held to the API's own rules (``llmtap.api.integration_rules``: the address rule,
sample rate, filters, ``webhooks_max_per_org``); a refusal is shown on the page with what was
typed, and nothing is created. A created webhook redirects to ``/webhooks/new/<ticket>``, which
shows the secret once (``key_reveal.py``, as for a new key): a reload, Back or another browser
gets "already shown", and every answer is ``Cache-Control: no-store``.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from llmtap.api.integration_rules import (
    SettingRefused,
    check_room_for_webhook,
    checked_webhook,
    filters_from_pairs,
)
from llmtap.dashboard.auth import Signed, check_csrf, form_fields, viewer
from llmtap.dashboard.context import DashboardContext, dashboard
from llmtap.dashboard.key_reveal import NewWebhook
from llmtap.dashboard.webhooks import WebhookForm, list_page

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store"}
REDISPLAY_CHARS = 16_384


def _sample_rate(text: str) -> float:
    if not text.strip():
        return 100.0
    try:
        return float(text[:40])
    except ValueError:
        raise SettingRefused("sample_rate: a percentage, 0-100") from None


def _create(ctx: DashboardContext, org_id: str, form: WebhookForm) -> NewWebhook:
    """The webhook the form asks for, created; ``SettingRefused`` (nothing created) otherwise.
    Blocking: the address rule resolves the URL's host name."""
    new = checked_webhook(
        form.url,
        _sample_rate(form.sample_rate),
        filters_from_pairs(form.filters.splitlines()),
        allow_private=ctx.api.outbox_allow_private,
    )
    check_room_for_webhook(ctx.records, org_id, ctx.api.webhooks_max_per_org)
    webhook_id, secret = ctx.records.integrations.create_webhook(
        org_id, new.url, new.sample_rate, new.property_filters
    )
    return NewWebhook(webhook_id, new.url, new.sample_rate, new.property_filters, secret)


@router.post("/webhooks")
async def create_webhook(request: Request) -> Response:
    ctx = dashboard(request)
    signed = await run_in_threadpool(viewer, request)
    fields = await form_fields(request)
    check_csrf(request, signed, fields)
    form = WebhookForm(
        url=fields.get("url", "").strip(),
        sample_rate=fields.get("sample_rate", "")[:40],
        filters=fields.get("filters", ""),
    )
    try:
        created = await run_in_threadpool(_create, ctx, signed.org_id, form)
    except SettingRefused as exc:
        # shown again to be corrected, not as a way to make the page echo a megabyte
        typed = replace(
            form, url=form.url[:REDISPLAY_CHARS], filters=form.filters[:REDISPLAY_CHARS]
        )
        return await run_in_threadpool(
            list_page, request, signed, form=typed, error=str(exc), status=400
        )
    ticket = ctx.webhook_reveals.hold(signed.session.token_hash, created)
    return RedirectResponse(f"/webhooks/new/{ticket}", status_code=303, headers=NO_STORE)


@router.get("/webhooks/new/{ticket}")
def new_webhook_page(ticket: str, request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    shown = ctx.webhook_reveals.take(signed.session.token_hash, ticket[:100])
    return ctx.pages.render(
        request,
        "webhook_created.html",
        {"viewer": signed, "page": "webhooks", "new_hook": shown},
        status_code=200 if shown else 410,
        headers=NO_STORE,
    )
