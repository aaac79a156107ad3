"""``/v1/alerts``: an organization's alert rules, their state and their history.

Every route reads and writes through the caller's organization (``Org``): another
organization's rule id, hand-edited into a URL, is a 404 like an id nobody has. A rule's URL is
checked like a webhook's (no private, loopback, link-local or metadata address unless
``outbox_allow_private_targets``) and again on every send; its signing secret is in the creation
answer only. What a rule may say is checked by ``llmtap.alerts.rules``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from llmtap.alerts.messages import is_slack
from llmtap.alerts.rules import COMPARISONS, METRICS, AlertRuleError, check_rule
from llmtap.api.context import Ctx, Org
from llmtap.api.schemas import ERROR_RESPONSES
from llmtap.api.webhooks import delivery_json, iso, records_of
from llmtap.delivery.guard import MAX_URL_LENGTH, TargetRefused, check_new_url
from llmtap.stores.records.alerts import AlertRule, Episode

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=ERROR_RESPONSES)

MAX_HISTORY = 1000


class AlertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
    """Where firings and resolutions are POSTed (Slack's shape for ``hooks.slack.com``)."""
    metric: Annotated[str, Field(max_length=64, description=", ".join(METRICS))]
    threshold: float
    comparison: Annotated[str, Field(max_length=16, description=", ".join(COMPARISONS))] = "gt"
    window_s: Annotated[int, Field(ge=0, le=10**9)] = 300
    """The metric is computed over the calls of the last ``window_s`` seconds."""
    min_requests: Annotated[int, Field(ge=0, le=10**9)] = 1
    """A window (or group) with fewer calls never fires, and resolves an open episode."""
    name: Annotated[str | None, Field(max_length=1000)] = None
    filter: dict[str, Any] | None = None
    """Which calls count: the filter tree of ``/v1/requests`` (no text in bodies)."""
    group_by: Annotated[str | None, Field(max_length=1000)] = None
    """``model``, ``user``, … or ``property:<name>``: each group fires and resolves on its own."""


def rule_json(rule: AlertRule, firing: list[Episode] | None = None) -> dict[str, Any]:
    spec = rule.spec
    out: dict[str, Any] = {
        "id": rule.id,
        "name": spec.name,
        "url": rule.url,
        "slack": is_slack(rule.url),
        "metric": spec.metric,
        "comparison": spec.comparison,
        "threshold": spec.threshold,
        "window_s": spec.window_s,
        "min_requests": spec.min_requests,
        "filter": spec.filter,
        "group_by": spec.group_by,
        "created_at": rule.created.isoformat().replace("+00:00", "Z"),
        "last_evaluated_at": iso(rule.last_eval_ms),
        "last_error": rule.last_error,
        "delivery_state": "paused"
        if rule.paused
        else "failing"
        if rule.consecutive_failures
        else "active",
        "delivery_failures": rule.consecutive_failures,
        "last_delivery_error": rule.delivery_error,
    }
    if firing is not None:
        out["state"] = "firing" if firing else "ok"
        out["firing"] = [episode_json(e) for e in firing]
    return out


def episode_json(e: Episode) -> dict[str, Any]:
    return {
        "id": e.id,
        "group": e.group_value,
        "threshold": e.threshold,
        "fired_at": iso(e.fired_ms),
        "value": e.fired_value,
        "resolved_at": iso(e.resolved_ms),
        "resolved_value": e.resolved_value,
        "state": "firing" if e.resolved_ms is None else "resolved",
    }


@router.post("", status_code=201, summary="Create an alert rule (its signing secret is shown once)")
def create_alert(body: AlertIn, org: Org, ctx: Ctx) -> dict[str, Any]:
    store = records_of(ctx)
    try:
        check_new_url(body.url, ctx.outbox_allow_private)
    except TargetRefused as exc:
        raise HTTPException(400, f"url: {exc}") from None
    try:
        spec = check_rule(
            name=body.name,
            metric=body.metric,
            comparison=body.comparison,
            threshold=body.threshold,
            window_s=body.window_s,
            min_requests=body.min_requests,
            filter=body.filter,
            group_by=body.group_by,
            limits=ctx.alert_limits,
        )
    except AlertRuleError as exc:
        raise HTTPException(400, str(exc)) from None
    if store.alerts.count(org) >= ctx.alert_limits.max_per_org:
        raise HTTPException(
            400, f"an organization may have at most {ctx.alert_limits.max_per_org} alert rules"
        )
    rule_id, secret = store.alerts.create(org, body.url, spec)
    rule = store.alerts.rule(org, rule_id)
    assert rule is not None
    return {**rule_json(rule, []), "secret": secret}


@router.get("", summary="List the organization's alert rules and their state")
def list_alerts(org: Org, ctx: Ctx) -> dict[str, Any]:
    store = records_of(ctx)
    return {
        "data": [
            rule_json(r, [e for e in store.alerts.history(org, r.id, 100) if e.resolved_ms is None])
            for r in store.alerts.rules(org)
        ]
    }


def _rule(ctx: Ctx, org: str, rule_id: str) -> AlertRule:
    rule = records_of(ctx).alerts.rule(org, rule_id)
    if rule is None:
        raise HTTPException(404, "no such alert rule")
    return rule


@router.get("/{rule_id}", summary="One alert rule and its firing groups")
def get_alert(rule_id: str, org: Org, ctx: Ctx) -> dict[str, Any]:
    rule = _rule(ctx, org, rule_id)
    episodes = records_of(ctx).alerts.history(org, rule_id, MAX_HISTORY)
    return rule_json(rule, [e for e in episodes if e.resolved_ms is None])


@router.delete("/{rule_id}", status_code=204, summary="Delete an alert rule and its history")
def delete_alert(rule_id: str, org: Org, ctx: Ctx) -> Response:
    if not records_of(ctx).alerts.delete(org, rule_id):
        raise HTTPException(404, "no such alert rule")
    return Response(status_code=204)


@router.get("/{rule_id}/history", summary="The rule's episodes (fired, resolved), newest first")
def alert_history(
    rule_id: str,
    org: Org,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 100,
) -> dict[str, Any]:
    _rule(ctx, org, rule_id)
    return {"data": [episode_json(e) for e in records_of(ctx).alerts.history(org, rule_id, limit)]}


@router.get("/{rule_id}/deliveries", summary="What was sent for the rule, newest first")
def alert_deliveries(
    rule_id: str,
    org: Org,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 100,
) -> dict[str, Any]:
    _rule(ctx, org, rule_id)
    return {"data": [delivery_json(d) for d in records_of(ctx).outbox.history(org, rule_id, limit)]}


@router.post("/{rule_id}/resume", summary="Un-pause the rule's endpoint and retry its deliveries")
def resume_alert(rule_id: str, org: Org, ctx: Ctx) -> dict[str, Any]:
    _rule(ctx, org, rule_id)
    records_of(ctx).outbox.resume(org, rule_id, int(time.time() * 1000))
    return get_alert(rule_id, org, ctx)
