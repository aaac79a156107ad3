"""The metrics query the analytics store answers: totals over a time range, per bucket and group.

One SELECT per call (totals and series from one scan): ``FROM <table> FINAL`` collapses redelivered copies of a request before any
aggregate sees them, so a replayed batch never counts twice. Percentiles are exact
(``quantilesExact``: the value at index ``floor(level * n)`` of the sorted values). Costs are
summed as integer nano-dollars.

The organization is always the first condition; group keys are fixed expressions chosen from an
allow-list (a property name is a bound parameter), never text from the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from llmtap.stores.analytics.ddl import GROUP_KEYS, TABLE
from llmtap.stores.analytics.filter_clickhouse import to_clickhouse
from llmtap.stores.filter import Filter, FilterError

QUANTILES = (0.5, 0.9, 0.95, 0.99)
QUANTILE_NAMES = tuple(f"p{round(q * 100)}" for q in QUANTILES)
MAX_ROWS = 50_000
"""Series rows one query returns at most."""

TOKEN_KINDS = (
    "input",
    "output",
    "total",
    "cache_read",
    "cache_write",
    "reasoning",
    "audio_input",
    "audio_output",
)

Quantiles = dict[str, float | None]
"""``p50``, ``p90``, ``p95``, ``p99``; ``None`` without data."""


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    org_id: str
    start_unix_ms: float
    end_unix_ms: float
    """Exclusive."""
    bucket_s: int | None = None
    """``None``: one row per group over the whole range."""
    group_by: str | None = None
    """A key of ``GROUP_KEYS`` or ``property:<name>``."""
    filter: Filter | None = None
    """Which calls count (no text in bodies: ``FilterError``)."""


@dataclass(frozen=True, slots=True)
class Metrics:
    requests: int
    errors: int
    """Status 400 and above, 0 (no answer), or an error recorded."""
    cost_nano_usd: int
    """Sum over priced calls only."""
    priced_requests: int
    unpriced_requests: int
    """Calls with a model but no known price."""
    tokens: dict[str, int]
    """Sums per kind in ``TOKEN_KINDS``."""
    latency_ms: Quantiles
    ttft_ms: Quantiles
    active_users: int
    cache_hits: int = 0
    """Calls answered from the gateway's response cache."""
    cache_saved_nano_usd: int = 0
    """What those calls would have cost (sum over the priced ones)."""
    bucket_start_unix_ms: int | None = None
    """Set in a series by bucket."""
    group: str | None = None
    """The group's value in a series by group (``None`` also for calls without one)."""


@dataclass(frozen=True, slots=True)
class MetricsResult:
    totals: Metrics
    series: list[Metrics] = field(default_factory=list)
    """Per bucket and/or group, in key order; empty without ``bucket_s`` and ``group_by``."""


# Aliases carry an ``m_`` prefix: ClickHouse resolves an alias before a column of the same name,
# so ``sum(cost_nano_usd) AS cost_nano_usd`` would leak into every other use of that column.
COUNTS = ",\n".join(
    [
        "count() AS m_requests",
        "countIf(status >= 400 OR status = 0 OR error IS NOT NULL) AS m_errors",
        "toInt64(ifNull(sum(cost_nano_usd), 0)) AS m_cost_nano",
        "countIf(cost_nano_usd IS NOT NULL) AS m_priced",
        "countIf(cost_nano_usd IS NULL AND coalesce(model, response_model) IS NOT NULL)"
        " AS m_unpriced",
    ]
)
"""Requests, errors and cost: cheap per row, a few bytes of state per group."""
TOKENS = ",\n".join(f"toInt64(ifNull(sum({k}_tokens), 0)) AS m_tokens_{k}" for k in TOKEN_KINDS)

# The exact percentiles keep every value of their group and distinct users a set of hashes:
# most of a query's time and memory, so they are asked only where they are shown.
_AGGREGATES = ",\n".join(
    [
        COUNTS,
        TOKENS,
        "quantilesExact(0.5, 0.9, 0.95, 0.99)(latency_ms) AS m_latency_q",
        "quantilesExactIf(0.5, 0.9, 0.95, 0.99)(assumeNotNull(ttft_ms), ttft_ms IS NOT NULL)"
        " AS m_ttft_q",
        "countIf(ttft_ms IS NOT NULL) AS m_ttft_count",
        "uniqExact(user_id) AS m_active_users",
        "countIf(cache_hit) AS m_cache_hits",
        "toInt64(ifNull(sum(cache_saved_nano_usd), 0)) AS m_cache_saved_nano",
    ]
)


def _group_expression(group_by: str | None, params: dict[str, Any]) -> str | None:
    if group_by is None or group_by == "":
        return None
    if group_by.startswith("property:"):
        # properties are stored with lower-cased names; the name is a bound parameter
        params["property"] = group_by.removeprefix("property:").lower()
        # a missing key reads as '' from a Map: report it as no value
        return "nullIf(properties[{property:String}], '')"
    if group_by in GROUP_KEYS:
        return GROUP_KEYS[group_by]
    raise FilterError(
        f"group_by: unknown {group_by!r}; use one of {', '.join(GROUP_KEYS)} or property:<name>"
    )


# Copies of one request always share its partition (the partition key is computed from
# ``created``, which every copy has the same: ddl.py), so FINAL may collapse copies partition by
# partition instead of merging the whole range at once: the same rows, exactly.
FINAL_SETTINGS = "do_not_merge_across_partitions_select_final = 1"

_BUCKET = (
    "toUnixTimestamp64Milli(toDateTime64(toStartOfInterval(created,"
    " toIntervalSecond({bucket_s:UInt32})), 3, 'UTC'))"
)


def _where(query: MetricsQuery, params: dict[str, Any]) -> str:
    params.update(
        org=query.org_id,
        start=math.floor(query.start_unix_ms),
        end=math.ceil(query.end_unix_ms),
    )
    sql = (
        f" FROM {TABLE} FINAL"
        " WHERE org_id = {org:String}"
        " AND created >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')"
        " AND created < fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
    )
    if query.filter is not None:
        sql += f" AND {to_clickhouse(query.filter, params)}"
    return sql


def build_sql(query: MetricsQuery) -> tuple[str, dict[str, Any]]:
    """The SELECT and its parameters for ``query``: one scan for the totals and the series.

    With buckets or a group, ``GROUPING SETS ((keys), ())`` gives the series rows and the totals
    row (``m_total = 1``, first) from the same read of the table; each set is aggregated on its
    own, so the totals' percentiles and distinct users are exact, not merged from the series.
    (``ROLLUP``, the totals merged from the series' states, gives the same rows but measured
    slower with many groups: 5,000 users 138 ms against 82 ms; decision note
    2026-12-01-dashboard-queries.)
    """
    params: dict[str, Any] = {}
    keys: list[str] = []
    select: list[str] = []
    if query.bucket_s is not None:
        params["bucket_s"] = query.bucket_s
        select.append(f"{_BUCKET} AS bucket_start")
        keys.append(_BUCKET)
    group = _group_expression(query.group_by, params)
    if group is not None:
        select.append(f"{group} AS group_key")
        keys.append(group)
    # (the keys are spelled out, not aliased: grouping() does not see through aliases here)
    expressions = ", ".join(keys)
    if keys:
        # grouping() sets a key's bit when the row is aggregated over it: only the totals row
        select.append(f"grouping({expressions}) != 0 AS m_total")
    select.append(_AGGREGATES)
    sql = f"SELECT {', '.join(select)}{_where(query, params)}"
    settings = FINAL_SETTINGS
    if keys:
        sql += f" GROUP BY GROUPING SETS (({expressions}), ()) ORDER BY m_total DESC, {expressions}"
        # the totals row's keys read as NULL, not as a group's '' or 0
        settings += ", group_by_use_nulls = 1"
    sql += f" LIMIT {MAX_ROWS + 1} SETTINGS {settings}"
    return sql, params


def nothing() -> Metrics:
    """The totals of no calls (what the aggregates give over no rows; ``ROLLUP`` gives no row)."""
    return Metrics(
        requests=0,
        errors=0,
        cost_nano_usd=0,
        priced_requests=0,
        unpriced_requests=0,
        tokens=dict.fromkeys(TOKEN_KINDS, 0),
        latency_ms=dict.fromkeys(QUANTILE_NAMES),
        ttft_ms=dict.fromkeys(QUANTILE_NAMES),
        active_users=0,
    )


def result_of(rows: list[dict[str, Any]]) -> MetricsResult:
    """``build_sql``'s rows as totals and series."""
    if not rows:
        return MetricsResult(nothing())
    if "m_total" not in rows[0]:
        [totals] = rows
        return MetricsResult(metrics_of(totals))
    totals = rows[0]
    assert totals["m_total"], "the totals row comes first"
    return MetricsResult(metrics_of(totals), [metrics_of(row) for row in rows[1:]])


def totals_of(query: MetricsQuery) -> MetricsQuery:
    """The same calls, without buckets or groups."""
    return MetricsQuery(query.org_id, query.start_unix_ms, query.end_unix_ms, filter=query.filter)


def metrics_of(row: dict[str, Any]) -> Metrics:
    """One result row of ``build_sql``'s SELECT."""
    requests = int(row["m_requests"])
    return Metrics(
        requests=requests,
        errors=int(row["m_errors"]),
        cost_nano_usd=int(row["m_cost_nano"]),
        priced_requests=int(row["m_priced"]),
        unpriced_requests=int(row["m_unpriced"]),
        tokens={kind: int(row[f"m_tokens_{kind}"]) for kind in TOKEN_KINDS},
        latency_ms=_quantiles(row["m_latency_q"], requests),
        ttft_ms=_quantiles(row["m_ttft_q"], int(row["m_ttft_count"])),
        active_users=int(row["m_active_users"]),
        cache_hits=int(row.get("m_cache_hits") or 0),
        cache_saved_nano_usd=int(row.get("m_cache_saved_nano") or 0),
        bucket_start_unix_ms=None if row.get("bucket_start") is None else int(row["bucket_start"]),
        group=None if row.get("group_key") is None else str(row["group_key"]),
    )


def _quantiles(values: Any, count: int) -> Quantiles:
    if not count or not isinstance(values, list) or len(values) != len(QUANTILES):
        return dict.fromkeys(QUANTILE_NAMES)
    out: Quantiles = {}
    for name, value in zip(QUANTILE_NAMES, values, strict=True):
        number = float(value)
        out[name] = None if math.isnan(number) else number
    return out
