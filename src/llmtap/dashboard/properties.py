"""``/properties``: custom properties and, for the one chosen (``?name=``), its values broken down
by requests, cost, latency (p50/p95) and errors over the range and filter — one metrics query
grouped by ``property:<name>`` — each linking to Requests filtered on that value.

Names are never listed in full: the page offers a few (the look-up ``/ui/properties`` reads the
newest calls of the range) and a search box that asks for more as one types.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmtap.api.context import ApiContext
from llmtap.api.filters import check_property_name
from llmtap.api.metrics_query import compute
from llmtap.api.query_gate import QueryBusy
from llmtap.dashboard.auth import Signed
from llmtap.dashboard.context import dashboard
from llmtap.dashboard.state import RANGES, PageState, builder_fields, parse_state
from llmtap.errors import StoreError
from llmtap.stores.analytics.metrics import MetricsQuery
from llmtap.stores.filter import FilterError
from llmtap.stores.records.property_lookup import Lookup

router = APIRouter(include_in_schema=False)

MAX_VALUES = 200
"""Values shown for one property (the rest are counted)."""
NAMES_OFFERED = 30
ValueSort = Literal["requests", "cost", "p50", "p95", "errors", "value"]
VALUE_SORTS: tuple[ValueSort, ...] = ("requests", "cost", "p50", "p95", "errors", "value")
COLUMNS: tuple[tuple[ValueSort, str], ...] = (
    ("value", "Value"),
    ("requests", "Requests"),
    ("cost", "Cost"),
    ("p50", "Latency p50"),
    ("p95", "Latency p95"),
    ("errors", "Errors"),
)


def _sort_key(sort: ValueSort) -> Any:
    def key(series: dict[str, Any]) -> Any:
        if sort == "value":
            return series["group"] or ""
        if sort == "cost":
            return series["cost_nano_usd"]
        if sort in ("p50", "p95"):
            value = series["latency_ms"][sort]
            return -1.0 if value is None else value
        return series[sort]

    return key


def _breakdown(
    api: ApiContext, org_id: str, state: PageState, name: str, sort: ValueSort, descending: bool
) -> tuple[dict[str, Any] | None, str | None]:
    if api.metrics is None:
        return None, (
            "The breakdown needs the analytics store, and this API process has none."
            " The property look-up and Requests still work."
        )
    if state.errors:
        return None, None
    query = MetricsQuery(
        org_id=org_id,
        start_unix_ms=state.start_ms,
        end_unix_ms=state.end_ms,
        group_by=f"property:{name}",
        filter=state.filter,
    )
    try:
        with api.gate.slot():
            result = compute(api.metrics, query, api.limits)
    except FilterError as exc:
        return None, str(exc)
    except QueryBusy as exc:
        return None, f"{exc}."
    except StoreError:
        return None, "The analytics store did not answer; try again in a moment."
    with_value = [s for s in result["series"] if s["group"] is not None]
    without = next((s for s in result["series"] if s["group"] is None), None)
    with_value.sort(key=_sort_key(sort), reverse=descending)
    return {
        "totals": result["totals"],
        "values": with_value[:MAX_VALUES],
        "distinct": len(with_value),
        "without": without,
    }, None


def _names(request: Request, org_id: str, state: PageState, contains: str) -> list[str]:
    ctx = dashboard(request)
    lookup = Lookup(
        org_id=org_id,
        start_unix_ms=state.start_ms,
        end_unix_ms=state.end_ms,
        contains=contains[:200],
        limit=NAMES_OFFERED,
    )
    try:
        with ctx.api.gate.slot():
            return ctx.records.property_names(lookup)
    except (QueryBusy, StoreError):
        return []


@router.get("/properties")
def property_names_page(request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    state = parse_state(request.query_params, ctx.api.limits)
    find = request.query_params.get("find", "")[:200]
    names = _names(request, signed.org_id, state, "" if "\x00" in find else find)
    context = {
        "viewer": signed,
        "state": state,
        "page": "properties",
        "find": find,
        "names": names,
        "limit": NAMES_OFFERED,
        "name_url": lambda chosen: state.url(f"/properties/{quote(chosen, safe='')}"),
    }
    partial = bool(request.headers.get("hx-request"))
    template = "_property_names.html" if partial else "properties.html"
    return ctx.pages.render(request, template, context)


@router.get("/properties/{name:path}")
def property_values_page(name: str, request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    params = request.query_params
    state = parse_state(params, ctx.api.limits)
    name = name.strip().removeprefix("properties.").lower()
    sort: ValueSort = "requests"
    raw_sort = params.get("sort", "requests")
    if raw_sort in VALUE_SORTS:
        sort = raw_sort
    else:
        state.errors.append(f"sort: one of {', '.join(VALUE_SORTS)}")
    descending = params.get("order", "asc" if sort == "value" else "desc") != "asc"
    breakdown: dict[str, Any] | None = None
    notice: str | None = None
    try:
        check_property_name(name, "name")
    except FilterError as exc:
        state.errors.append(str(exc))
    else:
        breakdown, notice = _breakdown(ctx.api, signed.org_id, state, name, sort, descending)
    path = f"/properties/{quote(name, safe='')}"

    def value_url(value: str) -> str:
        leaf = {"field": f"properties.{name}", "op": "eq", "value": value}
        return state.url("/requests", filter_text=state.with_filter(leaf), cursor="")

    def sort_url(key: ValueSort) -> str:
        default_desc = key != "value"
        flip = sort == key and descending == default_desc
        order = ("asc" if default_desc else "desc") if flip else ("desc" if default_desc else "asc")
        base = state.url(path)
        return base + ("&" if "?" in base else "?") + urlencode({"sort": key, "order": order})

    context = {
        "viewer": signed,
        "state": state,
        "ranges": list(RANGES),
        "builder": builder_fields(),
        "page": "properties",
        "name": name,
        "breakdown": breakdown,
        "notice": notice,
        "columns": COLUMNS,
        "sort": sort,
        "descending": descending,
        "max_values": MAX_VALUES,
        "value_url": value_url,
        "sort_url": sort_url,
        "action": path,
        "without_url": state.url(
            "/requests",
            filter_text=state.with_filter(
                {"field": f"properties.{name}", "op": "exists", "value": False}
            ),
            cursor="",
        ),
    }
    partial = bool(request.headers.get("hx-request"))
    template = "_property_values.html" if partial else "property_values.html"
    status = 400 if state.errors and not partial else 200
    return ctx.pages.render(request, template, context, status_code=status)
