"""Metrics over time, computed by the analytics store (ClickHouse SQL on chDB or a server).

One query per call: ``FROM <table> FINAL`` collapses redelivered copies of a request before any
aggregate sees them, so a replayed batch never counts twice. Percentiles are exact
(``quantilesExact``: the value at index ``floor(level * n)`` of the sorted values). Costs are
summed as integer nano-dollars and converted to USD once, at the end.

The organization is always the first condition; group keys are fixed expressions chosen from an
allow-list (a property name is a bound parameter), never text from the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from llmtap.api.filter_clickhouse import to_clickhouse
from llmtap.api.filters import Filter, FilterError, FilterLimits, check_property_name, check_size
from llmtap.api.rows import iso_time
from llmtap.stores.analytics.ddl import GROUP_KEYS, TABLE

QUANTILES = (0.5, 0.9, 0.95, 0.99)
MAX_BUCKETS = 10_000
MAX_BUCKET_S = 2**32 - 1
"""The bucket is bound as UInt32 (``toIntervalSecond``)."""
MAX_ROWS = 50_000
BUCKET_NAMES = {"minute": 60, "hour": 3600, "day": 86400}


@runtime_checkable
class MetricsSource(Protocol):
    """What metrics need of the analytics store (``AnalyticsStore.query_rows``)."""

    def query_rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    org_id: str
    start_unix_ms: float
    end_unix_ms: float
    bucket_s: int | None = None
    """``None``: one row per group over the whole range."""
    group_by: str | None = None
    filter: Filter | None = None
    """Which calls count (the search filter tree, without text in bodies)."""


def bucket_seconds(raw: str | int | None) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str) and raw in BUCKET_NAMES:
        return BUCKET_NAMES[raw]
    try:
        seconds = int(raw)
    except (TypeError, ValueError):
        raise FilterError(
            f"bucket: {raw!r} is not minute, hour, day or a number of seconds"
        ) from None
    if not 1 <= seconds <= MAX_BUCKET_S:
        raise FilterError(f"bucket: must be between 1 and {MAX_BUCKET_S} seconds")
    return seconds


def _group_expression(group_by: str | None, params: dict[str, Any]) -> str | None:
    if group_by is None or group_by == "":
        return None
    if group_by.startswith("property:"):
        name = check_property_name(group_by.removeprefix("property:").lower(), "group_by")
        params["property"] = name
        # a missing key reads as '' from a Map: report it as no value
        return "nullIf(properties[{property:String}], '')"
    if group_by in GROUP_KEYS:
        return GROUP_KEYS[group_by]
    raise FilterError(
        f"group_by: unknown {group_by!r}; use one of {', '.join(GROUP_KEYS)} or property:<name>"
    )


# Aliases carry an ``m_`` prefix: ClickHouse resolves an alias before a column of the same name,
# so ``sum(cost_nano_usd) AS cost_nano_usd`` would leak into every other use of that column.
_TOKEN_KINDS = (
    "input",
    "output",
    "total",
    "cache_read",
    "cache_write",
    "reasoning",
    "audio_input",
    "audio_output",
)
_AGGREGATES = ",\n".join(
    [
        "count() AS m_requests",
        "countIf(status >= 400 OR status = 0 OR error IS NOT NULL) AS m_errors",
        "toInt64(ifNull(sum(cost_nano_usd), 0)) AS m_cost_nano",
        "countIf(cost_nano_usd IS NOT NULL) AS m_priced",
        "countIf(cost_nano_usd IS NULL AND coalesce(model, response_model) IS NOT NULL)"
        " AS m_unpriced",
        *(f"toInt64(ifNull(sum({k}_tokens), 0)) AS m_tokens_{k}" for k in _TOKEN_KINDS),
        "quantilesExact(0.5, 0.9, 0.95, 0.99)(latency_ms) AS m_latency_q",
        "quantilesExactIf(0.5, 0.9, 0.95, 0.99)(assumeNotNull(ttft_ms), ttft_ms IS NOT NULL)"
        " AS m_ttft_q",
        "countIf(ttft_ms IS NOT NULL) AS m_ttft_count",
        "uniqExact(user_id) AS m_active_users",
    ]
)


def build_sql(query: MetricsQuery) -> tuple[str, dict[str, Any]]:
    """The SELECT and its parameters for ``query`` (exposed for tests and docs)."""
    params: dict[str, Any] = {
        "org": query.org_id,
        "start": math.floor(query.start_unix_ms),
        "end": math.ceil(query.end_unix_ms),
    }
    keys: list[str] = []
    select: list[str] = []
    if query.bucket_s is not None:
        params["bucket_s"] = query.bucket_s
        select.append(
            "toUnixTimestamp64Milli(toDateTime64(toStartOfInterval(created,"
            " toIntervalSecond({bucket_s:UInt32})), 3, 'UTC')) AS bucket_start"
        )
        keys.append("bucket_start")
    group = _group_expression(query.group_by, params)
    if group is not None:
        select.append(f"{group} AS group_key")
        keys.append("group_key")
    select.append(_AGGREGATES)
    sql = (
        f"SELECT {', '.join(select)} FROM {TABLE} FINAL"
        " WHERE org_id = {org:String}"
        " AND created >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')"
        " AND created < fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
    )
    if query.filter is not None:
        sql += f" AND {to_clickhouse(query.filter, params)}"
    if keys:
        sql += f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}"
    sql += f" LIMIT {MAX_ROWS}"
    return sql, params


def check(query: MetricsQuery) -> None:
    if query.end_unix_ms <= query.start_unix_ms:
        raise FilterError("end: must be after start")
    if query.bucket_s is not None:
        buckets = (query.end_unix_ms - query.start_unix_ms) / (query.bucket_s * 1000.0)
        if buckets > MAX_BUCKETS:
            raise FilterError(
                f"bucket: {math.ceil(buckets)} buckets in the range; at most {MAX_BUCKETS}"
            )


def compute(
    source: MetricsSource, query: MetricsQuery, limits: FilterLimits | None = None
) -> dict[str, Any]:
    """The metrics document: ``totals`` over the range and ``series`` per bucket/group."""
    check(query)
    check_size(query.filter, limits or FilterLimits())
    totals_query = MetricsQuery(
        query.org_id, query.start_unix_ms, query.end_unix_ms, filter=query.filter
    )
    sql, params = build_sql(totals_query)
    [totals] = source.query_rows(sql, params)
    series: list[dict[str, Any]] = []
    if query.bucket_s is not None or query.group_by:
        sql, params = build_sql(query)
        series = [_metrics(row) for row in source.query_rows(sql, params)]
    return {
        "start": iso_time(query.start_unix_ms),
        "end": iso_time(query.end_unix_ms),
        "bucket_s": query.bucket_s,
        "group_by": query.group_by,
        "totals": _metrics(totals),
        "series": series,
    }


def _quantiles(values: Any, count: int) -> dict[str, float | None]:
    names = [f"p{round(q * 100)}" for q in QUANTILES]
    if not count or not isinstance(values, list) or len(values) != len(QUANTILES):
        return dict.fromkeys(names)
    out: dict[str, float | None] = {}
    for name, value in zip(names, values, strict=True):
        number = float(value)
        out[name] = None if math.isnan(number) else number
    return out


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row["m_requests"])
    errors = int(row["m_errors"])
    unpriced = int(row["m_unpriced"])
    nano = int(row["m_cost_nano"])
    out: dict[str, Any] = {}
    if "bucket_start" in row:
        out["bucket_start"] = iso_time(float(row["bucket_start"]))
        out["bucket_start_unix_ms"] = int(row["bucket_start"])
    if "group_key" in row:
        out["group"] = None if row["group_key"] is None else str(row["group_key"])
    out.update(
        {
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else None,
            "cost_usd": float(Decimal(nano) / 1_000_000_000),
            "cost_nano_usd": nano,
            "priced_requests": int(row["m_priced"]),
            "unpriced_requests": unpriced,
            "unpriced_share": unpriced / requests if requests else None,
            "tokens": {kind: int(row[f"m_tokens_{kind}"]) for kind in _TOKEN_KINDS},
            "latency_ms": _quantiles(row["m_latency_q"], requests),
            "ttft_ms": _quantiles(row["m_ttft_q"], int(row["m_ttft_count"])),
            "active_users": int(row["m_active_users"]),
        }
    )
    return out
