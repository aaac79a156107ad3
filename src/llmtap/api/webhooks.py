"""``/v1/webhooks``: an organization's webhooks, their delivery history, and resuming a paused one.

Every route reads and writes through the caller's organization (``Org``): another
organization's webhook id, hand-edited into a URL, is a 404 like an id nobody has. The signing
secret is in the creation answer only. URLs are checked like the proxy's targets (no private,
loopback, link-local or metadata address unless ``outbox_allow_private_targets``); the delivery
worker checks them again on every send.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from llmtap.api.context import ApiContext, Ctx, Org
from llmtap.api.integration_rules import SettingRefused, check_room_for_webhook, checked_webhook
from llmtap.api.schemas import ERROR_RESPONSES
from llmtap.delivery.guard import MAX_URL_LENGTH
from llmtap.stores.records.integrations import Webhook
from llmtap.stores.records.outbox import DeliveryInfo
from llmtap.stores.records.store import RecordsStore

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)

MAX_HISTORY = 1000


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
    """Where deliveries are POSTed: ``http(s)://host[:port][/path]``."""
    sample_rate: Annotated[float, Field(ge=0, le=100)] = 100.0
    """Percentage of matching calls delivered (0-100)."""
    property_filters: dict[str, str] = Field(default_factory=dict)
    """Custom properties a call must all have, with these values, to be delivered."""


def records_of(ctx: ApiContext) -> RecordsStore:
    if ctx.records is None:
        raise HTTPException(503, "this API has no records store")
    return ctx.records


def iso(unix_ms: int | None) -> str | None:
    if unix_ms is None:
        return None
    return datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def webhook_json(webhook: Webhook, pending: int) -> dict[str, Any]:
    target = webhook.target
    state = "paused" if target.paused else "failing" if target.consecutive_failures else "active"
    return {
        "id": target.id,
        "url": target.url,
        "sample_rate": webhook.rule.sample_rate,
        "property_filters": webhook.rule.property_filters,
        "created_at": target.created.isoformat().replace("+00:00", "Z"),
        "state": state,
        "paused": target.paused,
        "consecutive_failures": target.consecutive_failures,
        "last_error": target.last_error,
        "last_success_at": iso(target.last_success_ms),
        "next_attempt_at": iso(target.retry_at_ms) if target.consecutive_failures else None,
        "pending_deliveries": pending,
    }


def delivery_json(d: DeliveryInfo) -> dict[str, Any]:
    return {
        "id": d.id,
        "request_id": d.request_id,
        "idempotency_key": d.dedup_key,
        "status": d.status,
        "attempts": d.attempts,
        "created_at": iso(d.created_ms),
        "next_attempt_at": iso(d.next_attempt_ms),
        "finished_at": iso(d.done_ms),
        "last_status_code": d.last_status,
        "last_error": d.last_error,
    }


def _find(store: RecordsStore, org: str, webhook_id: str) -> Webhook:
    for webhook in store.integrations.webhooks(org):
        if webhook.target.id == webhook_id:
            return webhook
    raise HTTPException(404, "no such webhook")


@router.post("", status_code=201, summary="Create a webhook (its signing secret is shown once)")
def create_webhook(body: WebhookIn, org: Org, ctx: Ctx) -> dict[str, Any]:
    store = records_of(ctx)
    try:
        new = checked_webhook(
            body.url,
            body.sample_rate,
            body.property_filters,
            allow_private=ctx.outbox_allow_private,
        )
        check_room_for_webhook(store, org, ctx.webhooks_max_per_org)
    except SettingRefused as exc:
        raise HTTPException(400, str(exc)) from None
    webhook_id, secret = store.integrations.create_webhook(
        org, new.url, new.sample_rate, new.property_filters
    )
    created = webhook_json(_find(store, org, webhook_id), 0)
    return {**created, "secret": secret}


@router.get("", summary="List the organization's webhooks and their state")
def list_webhooks(org: Org, ctx: Ctx) -> dict[str, Any]:
    store = records_of(ctx)
    pending = store.outbox.pending_counts(org)
    return {
        "data": [
            webhook_json(w, pending.get(w.target.id, 0)) for w in store.integrations.webhooks(org)
        ]
    }


@router.get("/{webhook_id}", summary="One webhook and its state")
def get_webhook(webhook_id: str, org: Org, ctx: Ctx) -> dict[str, Any]:
    store = records_of(ctx)
    webhook = _find(store, org, webhook_id)
    return webhook_json(webhook, store.outbox.pending_counts(org).get(webhook_id, 0))


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook and its deliveries")
def delete_webhook(webhook_id: str, org: Org, ctx: Ctx) -> Response:
    if not records_of(ctx).integrations.delete_webhook(org, webhook_id):
        raise HTTPException(404, "no such webhook")
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", summary="Delivery history, newest first")
def webhook_deliveries(
    webhook_id: str,
    org: Org,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 100,
) -> dict[str, Any]:
    store = records_of(ctx)
    _find(store, org, webhook_id)
    return {"data": [delivery_json(d) for d in store.outbox.history(org, webhook_id, limit)]}


@router.post("/{webhook_id}/resume", summary="Un-pause a webhook and retry its deliveries now")
def resume_webhook(webhook_id: str, org: Org, ctx: Ctx) -> dict[str, Any]:
    store = records_of(ctx)
    _find(store, org, webhook_id)
    store.outbox.resume(org, webhook_id, int(time.time() * 1000))
    return get_webhook(webhook_id, org, ctx)
