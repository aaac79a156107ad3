"""``/``: the Overview. Every panel comes from the analytics store's Overview
(``AnalyticsStore.overview`` through ``api/metrics_query.compute_overview``, in this process,
holding one query-gate slot): the totals and one series by time bucket, and the breakdowns by
status, model and user, the data embedded in the page. With ``HX-Request`` only the panels are
rendered (live refresh swaps them in place).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmtap.api.context import ApiContext
from llmtap.api.metrics_query import compute_overview
from llmtap.api.query_gate import QueryBusy
from llmtap.dashboard.auth import Signed
from llmtap.dashboard.context import dashboard
from llmtap.dashboard.state import RANGES, PageState, builder_fields, parse_state
from llmtap.errors import StoreError
from llmtap.stores.analytics.metrics import MetricsQuery
from llmtap.stores.filter import FilterError

router = APIRouter(include_in_schema=False)

TOP = 10
UNPRICED_FILTER = {
    "and": [
        {"field": "cost_source", "op": "eq", "value": "unpriced"},
        {"field": "model", "op": "exists", "value": True},
    ]
}
"""The calls the ``unpriced`` share counts: a model, but no price for it."""


@router.get("/")
def overview(request: Request, signed: Signed) -> Response:
    ctx = dashboard(request)
    state = parse_state(request.query_params, ctx.api.limits)
    panels, notice = _panels(ctx.api, signed.org_id, state)
    context = {
        "viewer": signed,
        "state": state,
        "ranges": list(RANGES),
        "panels": panels,
        "notice": notice,
        "refresh_s": ctx.refresh_s,
        "builder": builder_fields(),
        "unpriced_url": state.url(
            "/requests", filter_text=state.with_filter(UNPRICED_FILTER), cursor=""
        ),
        "page": "overview",
    }
    partial = bool(request.headers.get("hx-request"))
    template = "_overview_panels.html" if partial else "overview.html"
    return ctx.pages.render(request, template, context, status_code=200)


def _panels(
    api: ApiContext, org_id: str, state: PageState
) -> tuple[dict[str, Any] | None, str | None]:
    if api.metrics is None:
        return None, (
            "Charts need the analytics store, and this API process has none (for example"
            " `llmtap api` started while `llmtap serve` holds the embedded one). Requests and"
            " request views still work."
        )
    if state.errors and state.filter is None and state.filter_text:
        return None, "Fix the filter to see the charts."

    query = MetricsQuery(
        org_id=org_id,
        start_unix_ms=state.start_ms,
        end_unix_ms=state.end_ms,
        bucket_s=state.bucket_s,
        filter=state.filter,
    )
    try:
        with api.gate.slot():
            found = compute_overview(api.metrics, query, api.limits)
    except FilterError as exc:
        return None, f"The charts cannot use this filter: {exc}"
    except QueryBusy as exc:
        return None, f"{exc}."
    except StoreError:
        return None, "The analytics store did not answer; try again in a moment."
    models = found["models"]
    return {
        "totals": found["totals"],
        "charts": _charts(found["series"], state),
        "errors_by_status": [
            s for s in sorted(found["statuses"], key=lambda s: -s["errors"]) if s["errors"]
        ],
        "models_by_requests": sorted(models, key=lambda s: -s["requests"])[:TOP],
        "models_by_cost": sorted(
            (s for s in models if s["cost_nano_usd"]), key=lambda s: -s["cost_nano_usd"]
        )[:TOP],
        "top_users": found["top_users"][:TOP],
    }, None


def _charts(series: list[dict[str, Any]], state: PageState) -> dict[str, Any]:
    """uPlot's data for each time chart: ``x`` in unix seconds over every bucket of the range
    (counts are 0 where nothing was logged, percentiles are missing)."""
    bucket_ms = state.bucket_s * 1000
    first = math.floor(state.start_ms / bucket_ms) * bucket_ms
    xs = list(range(int(first), int(state.end_ms), bucket_ms))
    by_start = {s["bucket_start_unix_ms"]: s for s in series}

    def column(pick: Any, empty: Any = 0) -> list[Any]:
        return [pick(by_start[x]) if x in by_start else empty for x in xs]

    x = [v // 1000 for v in xs]
    return {
        "requests": {
            "x": x,
            "unit": "count",
            "series": [
                {"label": "success", "values": column(lambda s: s["requests"] - s["errors"])},
                {"label": "error", "values": column(lambda s: s["errors"])},
            ],
        },
        "cost": {
            "x": x,
            "unit": "usd",
            "series": [{"label": "cost", "values": column(lambda s: s["cost_usd"])}],
        },
        "tokens": {
            "x": x,
            "unit": "count",
            "series": [
                {"label": "input", "values": column(lambda s: s["tokens"]["input"])},
                {"label": "output", "values": column(lambda s: s["tokens"]["output"])},
            ],
        },
        "latency": {
            "x": x,
            "unit": "ms",
            "series": [
                {"label": f"latency {p}", "values": column(lambda s, p=p: s["latency_ms"][p], None)}
                for p in ("p50", "p95", "p99")
            ],
        },
        "ttft": {
            "x": x,
            "unit": "ms",
            "series": [
                {"label": f"TTFT {p}", "values": column(lambda s, p=p: s["ttft_ms"][p], None)}
                for p in ("p50", "p95", "p99")
            ],
        },
    }
