"""``/requests``: logged calls in a table, filtered (the API's filter tree in ``f``, text in
bodies in ``q``), sorted and paged by keyset through the API's own ``RequestSearch``. With
``HX-Request`` only the table is rendered. ``/ui/properties`` and ``/ui/property-values`` are the
filter builder's look-ups: a few names or values containing what was typed, never a full list.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmtap.api.filters import all_of, check_size
from llmtap.api.query_gate import QueryBusy
from llmtap.api.rows import nano_to_usd
from llmtap.api.search import SearchPage, SearchQuery
from llmtap.dashboard.auth import Signed
from llmtap.dashboard.context import dashboard
from llmtap.dashboard.state import RANGES, PageState, builder_fields, parse_state
from llmtap.errors import StoreError
from llmtap.stores.filter import Filter, FilterError, Leaf
from llmtap.stores.records.property_lookup import Lookup

router = APIRouter(include_in_schema=False)

PAGE_ROWS = 50
SUGGESTIONS = 20
COLUMNS = (
    ("created", "Time"),
    (None, "Status"),
    (None, "Model"),
    (None, "Provider"),
    ("tokens", "Tokens in/out"),
    ("cost", "Cost"),
    ("latency", "Latency"),
    (None, "TTFT"),
    (None, "User"),
    (None, "Properties"),
)
"""(sort key or None, heading) of each column."""


@router.get("/requests")
def requests_page(request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    state = parse_state(request.query_params, ctx.api.limits, sortable=True)
    page, notice = _search(ctx.api, signed.org_id, state)
    context = {
        "viewer": signed,
        "state": state,
        "ranges": list(RANGES),
        "page_data": page,
        "notice": notice,
        "columns": COLUMNS,
        "builder": builder_fields(),
        "cost_usd": nano_to_usd,
        "page": "requests",
    }
    partial = bool(request.headers.get("hx-request"))
    template = "_requests_table.html" if partial else "requests.html"
    status = 400 if state.errors and not partial else 200
    return ctx.pages.render(request, template, context, status_code=status)


def _search(api: Any, org_id: str, state: PageState) -> tuple[SearchPage | None, str | None]:
    if state.errors:
        return None, None
    leaves: list[Filter | None] = [state.time_filter, state.filter]
    if state.text:
        leaves.append(Leaf("body", "contains", state.text, "text"))
    tree = all_of(*leaves)
    query = SearchQuery(
        org_id=org_id,
        filter=tree,
        sort=state.sort,
        descending=state.order == "desc",
        limit=PAGE_ROWS,
        cursor=state.cursor or None,
    )
    try:
        check_size(tree, api.limits)
        with api.gate.slot():
            return api.search.search(query), None
    except FilterError as exc:
        return None, str(exc)
    except QueryBusy as exc:
        return None, f"{exc}."
    except StoreError:
        return None, "The records store did not answer; try again in a moment."


def _lookup(request: Request, org_id: str, contains: str) -> Lookup:
    ctx = dashboard(request)
    state = parse_state(request.query_params, ctx.api.limits)
    return Lookup(
        org_id=org_id,
        start_unix_ms=state.start_ms,
        end_unix_ms=state.end_ms,
        contains=contains[:200],
        limit=SUGGESTIONS,
    )


@router.get("/ui/properties")
def property_names(request: Request, signed: Signed, q: str = "") -> Response:
    ctx = dashboard(request)
    names: list[str] = []
    if "\x00" not in q:
        with ctx.api.gate.slot():
            names = ctx.records.property_names(_lookup(request, signed.org_id, q))
    values = [f"properties.{name}" for name in names]
    return ctx.pages.render(request, "_suggestions.html", {"values": values})


@router.get("/ui/property-values")
def property_values(request: Request, signed: Signed, name: str = "", q: str = "") -> Response:
    ctx = dashboard(request)
    name = name.removeprefix("properties.").lower()
    values: list[str] = []
    if name and "\x00" not in name + q:
        with ctx.api.gate.slot():
            values = ctx.records.property_values(_lookup(request, signed.org_id, q), name)
    return ctx.pages.render(request, "_suggestions.html", {"values": values})
