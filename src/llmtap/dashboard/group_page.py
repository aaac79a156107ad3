"""The list pages of groups (Sessions, Users): one table of groups for the range and filter,
sortable and paged by keyset; the htmx partial is the same URL."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from llmtap.api.rows import nano_to_usd
from llmtap.dashboard.auth import Viewer
from llmtap.dashboard.context import dashboard
from llmtap.dashboard.group_list import fetch_groups, parse_order
from llmtap.dashboard.state import RANGES, builder_fields, parse_state
from llmtap.stores.analytics.groups import GroupKey


def group_list_page(
    request: Request,
    signed: Viewer,
    kind: GroupKey,
    columns: Sequence[tuple[str | None, str]],
    page: str,
) -> Response:
    """``page``.html (or its ``_<page>_table.html`` partial) listing the groups of ``kind``."""
    ctx = dashboard(request)
    state = parse_state(request.query_params, ctx.api.limits)
    order = parse_order(request.query_params, state.errors)
    page_data, notice = fetch_groups(ctx.api, signed.org_id, kind, state, order)
    context = {
        "viewer": signed,
        "state": state,
        "order": order,
        "ranges": list(RANGES),
        "page_data": page_data,
        "notice": notice,
        "columns": columns,
        "builder": builder_fields(),
        "cost_usd": nano_to_usd,
        "page": page,
        "list_path": f"/{page}",
    }
    partial = bool(request.headers.get("hx-request"))
    template = f"_{page}_table.html" if partial else f"{page}.html"
    status = 400 if state.errors and not partial else 200
    return ctx.pages.render(request, template, context, status_code=status)
