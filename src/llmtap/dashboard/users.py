"""``/users``: the users of the range (requests, cost, tokens, error rate, last seen), sortable
and paged by keyset, from the analytics store. ``/users/<id>``: one user's charts over time
(requests, cost, tokens, latency) and their calls (the Requests table, filtered on the user).

User ids are the callers' own strings, not unique across organizations: every query takes the
viewer's organization, so another organization's user id shows nothing of theirs (an empty page).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmtap.api.context import ApiContext
from llmtap.api.filters import all_of
from llmtap.api.metrics_query import compute
from llmtap.api.query_gate import QueryBusy
from llmtap.api.rows import nano_to_usd
from llmtap.dashboard.auth import Signed
from llmtap.dashboard.context import dashboard
from llmtap.dashboard.group_page import group_list_page
from llmtap.dashboard.overview import _charts as time_charts
from llmtap.dashboard.requests import COLUMNS as REQUEST_COLUMNS
from llmtap.dashboard.requests import _search
from llmtap.dashboard.state import RANGES, PageState, builder_fields, parse_state
from llmtap.errors import StoreError
from llmtap.stores.analytics.metrics import MetricsQuery
from llmtap.stores.filter import Filter, FilterError, Leaf

router = APIRouter(include_in_schema=False)

COLUMNS = (
    (None, "User"),
    ("requests", "Requests"),
    ("errors", "Error rate"),
    ("cost", "Cost"),
    ("tokens", "Tokens in / out"),
    ("first_seen", "First seen"),
    ("last_seen", "Last seen"),
)
MAX_USER_ID = 1024


@router.get("/users")
def users_page(request: Request, signed: Signed) -> Response:
    return group_list_page(request, signed, "user", COLUMNS, "users")


def _user_charts(
    api: ApiContext, org_id: str, state: PageState, user: Filter
) -> tuple[dict[str, Any] | None, str | None]:
    if api.metrics is None:
        return None, "Charts need the analytics store, and this API process has none."
    if state.errors:
        return None, None
    query = MetricsQuery(
        org_id=org_id,
        start_unix_ms=state.start_ms,
        end_unix_ms=state.end_ms,
        bucket_s=state.bucket_s,
        filter=all_of(user, state.filter),
    )
    try:
        with api.gate.slot():
            timeline = compute(api.metrics, query, api.limits)
    except FilterError as exc:
        return None, f"The charts cannot use this filter: {exc}"
    except QueryBusy as exc:
        return None, f"{exc}."
    except StoreError:
        return None, "The analytics store did not answer; try again in a moment."
    return {"totals": timeline["totals"], "charts": time_charts(timeline["series"], state)}, None


@router.get("/users/{user_id:path}")
def user_view(user_id: str, request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    state = parse_state(request.query_params, ctx.api.limits, sortable=True)
    if not user_id or len(user_id) > MAX_USER_ID or "\x00" in user_id:
        return ctx.pages.render(
            request,
            "not_found.html",
            {"viewer": signed, "page": "users", "what": "No user with this id."},
            status_code=404,
        )
    user = Leaf("user_id", "eq", user_id, "str")
    # the calls: the Requests table, with the user and-ed to the page's own filter
    scoped = replace(state, filter=all_of(user, state.filter))
    table, table_notice = _search(ctx.api, signed.org_id, scoped)
    path = "/users/" + quote(user_id, safe="")
    context = {
        "viewer": signed,
        "state": state,
        "ranges": list(RANGES),
        "page_data": table,
        "notice": table_notice,
        "columns": REQUEST_COLUMNS,
        "builder": builder_fields(),
        "cost_usd": nano_to_usd,
        "page": "users",
        "user_id": user_id,
        "table_path": path,
        "requests_url": state.url(
            "/requests",
            filter_text=state.with_filter({"field": "user_id", "op": "eq", "value": user_id}),
            cursor="",
        ),
    }
    if request.headers.get("hx-request"):
        return ctx.pages.render(request, "_requests_table.html", context)
    panels, notice = _user_charts(ctx.api, signed.org_id, state, user)
    context.update(panels=panels, charts_notice=notice, action=path)
    status = 400 if state.errors else 200
    return ctx.pages.render(request, "user_view.html", context, status_code=status)
