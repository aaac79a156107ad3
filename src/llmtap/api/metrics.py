"""``/v1/metrics``: counts, errors, cost, tokens, latency/TTFT percentiles and active users over a
time range, per bucket and group. GET takes query parameters; POST the same fields as JSON.

Metrics are computed by the analytics store, or, in a deployment whose records store is
Postgres and has no ClickHouse server, by the records store with the same figures
(``stores/records/analytics.py``); without either (an embedded chDB another process holds, or a
store that cannot be reached) the answer is 503.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from llmtap.api.context import ApiContext, Ctx, Org
from llmtap.api.errors import MetricsUnavailable
from llmtap.api.filters import TIME_MIN_MS, parse_filter, parse_time, query_time
from llmtap.api.metrics_query import bucket_seconds, compute, compute_overview
from llmtap.api.schemas import ERROR_RESPONSES
from llmtap.stores.analytics.ddl import GROUP_KEYS
from llmtap.stores.analytics.metrics import MetricsQuery

router = APIRouter(prefix="/v1/metrics", tags=["metrics"], responses=ERROR_RESPONSES)

DEFAULT_RANGE_MS = 24 * 3600 * 1000.0


class MetricsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: float | str | None = Field(None, description="unix ms or ISO-8601; default end - 24h")
    end: float | str | None = Field(
        None, description="unix ms or ISO-8601 (exclusive); default now"
    )
    bucket: str | int | None = Field(
        None, description="minute, hour, day or seconds; none: totals per group only"
    )
    group_by: str | None = Field(
        None,
        description=f"{', '.join(GROUP_KEYS)} or property:<name>",
    )
    filter: dict[str, Any] | None = Field(
        None,
        description="which calls count: the search filter tree (POST only; no text in bodies)",
        examples=[{"field": "properties.env", "op": "eq", "value": "prod"}],
    )


class Quantiles(BaseModel):
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


class ScoreStats(BaseModel):
    count: int = Field(description="calls with this score")
    average: float
    min: float
    max: float


class FeedbackStats(BaseModel):
    count: int = Field(description="calls with feedback")
    positive: int
    negative: int
    positive_rate: float | None = Field(description="thumbs-up rate: positive / count")


class Metrics(BaseModel):
    bucket_start: str | None = None
    bucket_start_unix_ms: int | None = None
    group: str | None = None
    requests: int
    errors: int
    error_rate: float | None
    cost_usd: float = Field(description="sum over priced calls, from exact nano-dollars")
    cost_nano_usd: int
    priced_requests: int
    unpriced_requests: int = Field(description="calls with a model but no known price")
    unpriced_share: float | None = Field(description="unpriced_requests / requests")
    tokens: dict[str, int]
    latency_ms: Quantiles
    ttft_ms: Quantiles
    active_users: int
    cache_hits: int = Field(0, description="calls answered from the gateway's response cache")
    cache_hit_rate: float | None = Field(None, description="cache_hits / requests")
    cache_saved_usd: float = Field(0.0, description="what the cache hits would have cost")
    cache_saved_nano_usd: int = 0
    scores: dict[str, ScoreStats] = Field(
        default_factory=dict, description="per score name, over the calls counted here"
    )
    feedback: FeedbackStats | None = Field(
        None, description="feedback over the calls counted here (null: none given)"
    )


class MetricsOut(BaseModel):
    start: str
    end: str
    bucket_s: int | None
    group_by: str | None
    totals: Metrics
    series: list[Metrics]


class Breakdown(BaseModel):
    group: str | None
    requests: int
    errors: int
    error_rate: float | None
    cost_usd: float
    cost_nano_usd: int
    priced_requests: int
    unpriced_requests: int
    unpriced_share: float | None


class OverviewOut(BaseModel):
    start: str
    end: str
    bucket_s: int | None
    totals: Metrics
    series: list[Metrics] = Field(description="per bucket, oldest first")
    models: list[Breakdown] = Field(description="every model (group), most requests first")
    statuses: list[Breakdown] = Field(description="every status (group), most requests first")
    top_users: list[Breakdown] = Field(description="the 10 users with most requests")


def _query(ctx: ApiContext, org: str, body: MetricsBody) -> MetricsQuery:
    if ctx.metrics is None:
        raise MetricsUnavailable(
            "metrics need the analytics store, and none is configured for this API"
        )
    end = time.time() * 1000.0 if body.end is None else parse_time(body.end, "end")
    if body.start is None:
        start = max(end - DEFAULT_RANGE_MS, TIME_MIN_MS)
    else:
        start = parse_time(body.start, "start")
    return MetricsQuery(
        org_id=org,
        start_unix_ms=start,
        end_unix_ms=end,
        bucket_s=bucket_seconds(body.bucket),
        group_by=body.group_by or None,
        filter=None if body.filter is None else parse_filter(body.filter),
    )


def _run(ctx: ApiContext, org: str, body: MetricsBody) -> dict[str, Any]:
    query = _query(ctx, org, body)
    assert ctx.metrics is not None
    with ctx.gate.slot():
        return compute(ctx.metrics, query, ctx.limits)


@router.post(
    "/overview",
    response_model=OverviewOut,
    summary="The Overview's panels in one query",
    description=(
        "Totals, the series per bucket (default: hour), every model and status, and the top"
        " users, for one range and filter, from two scans. Models, statuses and users carry"
        " requests, errors and cost only (no tokens, percentiles or distinct users: ask"
        " /v1/metrics with group_by for those). `group_by` is not used."
    ),
)
def post_overview(body: MetricsBody, org: Org, ctx: Ctx) -> dict[str, Any]:
    if body.bucket is None:
        body = body.model_copy(update={"bucket": "hour"})
    query = _query(ctx, org, body)
    assert ctx.metrics is not None
    with ctx.gate.slot():
        return compute_overview(ctx.metrics, query, ctx.limits)


@router.post("", response_model=MetricsOut, response_model_exclude_none=False, summary="Metrics")
def post_metrics(body: MetricsBody, org: Org, ctx: Ctx) -> dict[str, Any]:
    return _run(ctx, org, body)


@router.get("", response_model=MetricsOut, summary="Metrics (query parameters)")
def get_metrics(
    org: Org,
    ctx: Ctx,
    start: Annotated[str | None, Query(description="unix ms or ISO-8601")] = None,
    end: Annotated[str | None, Query(description="unix ms or ISO-8601 (exclusive)")] = None,
    bucket: Annotated[str | None, Query(description="minute, hour, day or seconds")] = None,
    group_by: str | None = None,
) -> dict[str, Any]:
    body = MetricsBody(
        start=query_time(start), end=query_time(end), bucket=bucket, group_by=group_by, filter=None
    )
    return _run(ctx, org, body)
