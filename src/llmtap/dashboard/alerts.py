"""``/alerts``: the organization's alert rules, their state and episode history; delete.

Creating a rule (its signing secret is shown once) is the API's or the CLI's
(docs/integrations.md); the page links there. Only the session's organization's rules: an id of
another organization is answered like a missing one (404) and nothing is done to it. Delete is
a POST with the CSRF token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from llmtap.api.alerts import episode_json, rule_json
from llmtap.dashboard.auth import Signed, Viewer, check_csrf, form_fields, viewer
from llmtap.dashboard.context import dashboard
from llmtap.stores.records.alerts import AlertRule

router = APIRouter(include_in_schema=False)
HISTORY = 100


def _owned(request: Request, org_id: str, rule_id: str) -> AlertRule | None:
    if len(rule_id) > 64:
        return None
    return dashboard(request).records.alerts.rule(org_id, rule_id)


def _not_found(request: Request, signed: Viewer) -> Response:
    return dashboard(request).pages.render(
        request,
        "not_found.html",
        {
            "viewer": signed,
            "page": "alerts",
            "what": "No alert rule with this id in your organization.",
        },
        status_code=404,
    )


@router.get("/alerts")
def alerts_page(request: Request, signed: Signed) -> Response:
    table = dashboard(request).records.alerts
    rules = [
        rule_json(
            r, [e for e in table.history(signed.org_id, r.id, HISTORY) if e.resolved_ms is None]
        )
        for r in table.rules(signed.org_id)
    ]
    return dashboard(request).pages.render(
        request, "alerts.html", {"viewer": signed, "page": "alerts", "rules": rules}
    )


@router.get("/alerts/{rule_id}")
def alert_page(rule_id: str, request: Request, signed: Signed) -> Response:
    found = _owned(request, signed.org_id, rule_id)
    if found is None:
        return _not_found(request, signed)
    episodes = dashboard(request).records.alerts.history(signed.org_id, rule_id, HISTORY)
    return dashboard(request).pages.render(
        request,
        "alert_view.html",
        {
            "viewer": signed,
            "page": "alerts",
            "rule": rule_json(found, [e for e in episodes if e.resolved_ms is None]),
            "episodes": [episode_json(e) for e in episodes],
        },
    )


@router.post("/alerts/{rule_id}/delete")
async def delete(rule_id: str, request: Request) -> Response:
    signed = await run_in_threadpool(viewer, request)
    check_csrf(request, signed, await form_fields(request))
    found = await run_in_threadpool(_owned, request, signed.org_id, rule_id)
    if found is None:
        return await run_in_threadpool(_not_found, request, signed)
    await run_in_threadpool(dashboard(request).records.alerts.delete, signed.org_id, rule_id)
    return RedirectResponse("/alerts", status_code=303)
