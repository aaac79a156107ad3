"""The analytics queries (``stores/analytics/metrics.py``, ``overview.py``) in Postgres, over the
records store's ``requests`` table: what ``RecordsAnalytics`` runs when a distributed deployment
has no ClickHouse server (docs/decisions/2026-12-01-distributed-analytics.md).

Every figure means what the ClickHouse query's does, row for row (a contract test compares
them, ``tests/contract/test_records_analytics.py``):

* the records table holds each call once (an upsert), so there is no ``FINAL`` to collapse;
* percentiles are ClickHouse's ``quantilesExact``: the value at index ``floor(level * n)`` of
  the sorted values (``percentile_cont`` would interpolate and ``percentile_disc`` takes index
  ``ceil(level * n) - 1``: both differ), read from ``array_agg(... ORDER BY ...)``;
* times compare and bucket in whole milliseconds from the epoch, as ``DateTime64(3)`` does;
* group keys sort bytewise (``COLLATE "C"``), as ClickHouse sorts strings.

The rows have the ClickHouse queries' column names (``m_requests``, ``m_latency_q`` …), so
``metrics.result_of`` and ``overview.overview_of`` read both. The organization is the first
condition; every value is a bound parameter; group keys come from a fixed allow-list.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa

from llmtap.stores.analytics.ddl import GROUP_KEYS
from llmtap.stores.analytics.metrics import MAX_ROWS, QUANTILES, TOKEN_KINDS, MetricsQuery
from llmtap.stores.fields import FIELDS, INT_RANGES, Field
from llmtap.stores.filter import Filter, FilterError, has_text
from llmtap.stores.records.filter_sql import property_value, to_sql
from llmtap.stores.records.schema import requests

DIALECT = "postgresql"
BYTEWISE = 'COLLATE "C"'

# columns the aggregates read, carried through the derived table ``base``
_READ = (
    "status",
    "error",
    "model",
    "response_model",
    "cost_nano_usd",
    "latency_ms",
    "ttft_ms",
    "user_id",
    "cache_hit",
    "cache_saved_nano_usd",
    *(f"{kind}_tokens" for kind in TOKEN_KINDS),
)


def _quantiles(column: str, count: str, where: str = "") -> str:
    """``quantilesExact(0.5, 0.9, 0.95, 0.99)(column)`` as an array; NULLs without values."""
    ordered = f"array_agg({column} ORDER BY {column}){where}"
    picks = [
        f"({ordered})[least(floor({level} * {count})::int + 1, {count}::int)]"
        for level in QUANTILES
    ]
    return f"ARRAY[{', '.join(picks)}]"


COUNTS = ",\n".join(
    [
        "count(*) AS m_requests",
        "count(*) FILTER (WHERE status >= 400 OR status = 0 OR error IS NOT NULL) AS m_errors",
        "coalesce(sum(cost_nano_usd), 0)::bigint AS m_cost_nano",
        "count(cost_nano_usd) AS m_priced",
        "count(*) FILTER (WHERE cost_nano_usd IS NULL"
        " AND coalesce(model, response_model) IS NOT NULL) AS m_unpriced",
    ]
)
"""``metrics.COUNTS`` in Postgres."""

AGGREGATES = ",\n".join(
    [
        COUNTS,
        *(f"coalesce(sum({k}_tokens), 0)::bigint AS m_tokens_{k}" for k in TOKEN_KINDS),
        f"{_quantiles('latency_ms', 'count(latency_ms)')} AS m_latency_q",
        f"{_quantiles('ttft_ms', 'count(ttft_ms)', ' FILTER (WHERE ttft_ms IS NOT NULL)')}"
        " AS m_ttft_q",
        "count(ttft_ms) AS m_ttft_count",
        "count(DISTINCT user_id) AS m_active_users",
        "count(*) FILTER (WHERE cache_hit) AS m_cache_hits",
        "coalesce(sum(cache_saved_nano_usd), 0)::bigint AS m_cache_saved_nano",
    ]
)
"""``metrics._AGGREGATES`` in Postgres."""


def group_key(field: Field) -> sa.ColumnElement[object]:
    """The records column a metrics ``group_by`` groups by, as text like ``ddl.GROUP_KEYS``
    (a boolean as ``true``/``false``, as both Postgres and ClickHouse spell it)."""
    column: sa.ColumnElement[object] = requests.c[field.name]
    if field.kind in INT_RANGES or field.kind == "bool":
        return sa.cast(column, sa.Text())
    return column


def group_expression(group_by: str | None) -> sa.ColumnElement[object] | None:
    if group_by is None or group_by == "":
        return None
    if group_by.startswith("property:"):
        # a missing property, or an empty value, is no group (ClickHouse reads both as '')
        name = group_by.removeprefix("property:").lower()
        return sa.func.nullif(property_value(name, DIALECT), "")
    for field in FIELDS:
        if field.group == group_by and field.analytics is not None:
            return group_key(field)
    raise FilterError(
        f"group_by: unknown {group_by!r}; use one of {', '.join(GROUP_KEYS)} or property:<name>"
    )


def conditions(
    org_id: str, start_unix_ms: float, end_unix_ms: float, filter: Filter | None
) -> list[sa.ColumnElement[bool]]:
    """The organization first, the range in whole milliseconds, then the filter."""
    if has_text(filter):
        # the same refusal as filter_clickhouse's
        raise FilterError("text in bodies cannot filter metrics")
    found: list[sa.ColumnElement[bool]] = [
        requests.c.org_id == org_id,
        requests.c.created_unix_ms >= math.floor(start_unix_ms),
        requests.c.created_unix_ms < math.ceil(end_unix_ms),
    ]
    if filter is not None:
        found.append(to_sql(filter, DIALECT))
    return found


def bucket_of(bucket_s: int) -> sa.ColumnElement[object]:
    """The bucket's start in unix ms: ``toStartOfInterval`` in seconds, from the epoch."""
    width = int(bucket_s) * 1000
    bucket: sa.ColumnElement[int] = sa.cast(
        sa.func.floor(requests.c.created_unix_ms / sa.literal(width, sa.BigInteger())),
        sa.BigInteger(),
    ) * sa.literal(width, sa.BigInteger())
    return sa.type_coerce(bucket, sa.BigInteger())


def _base(query: MetricsQuery, keys: dict[str, sa.ColumnElement[object]]) -> sa.Subquery:
    columns: list[sa.ColumnElement[Any]] = [requests.c[name] for name in _READ]
    columns += [expression.label(name) for name, expression in keys.items()]
    where = conditions(query.org_id, query.start_unix_ms, query.end_unix_ms, query.filter)
    return sa.select(*columns).where(*where).subquery("base")


def _order(names: list[str]) -> str:
    return ", ".join(f"{name} {BYTEWISE}" if name == "group_key" else name for name in names)


def metrics_statement(query: MetricsQuery) -> sa.Select[Any]:
    """``metrics.build_sql``: the totals row first, then the series in key order."""
    keys: dict[str, sa.ColumnElement[object]] = {}
    if query.bucket_s is not None:
        keys["bucket_start"] = bucket_of(query.bucket_s)
    group = group_expression(query.group_by)
    if group is not None:
        keys["group_key"] = group
    base = _base(query, keys)
    if not keys:
        return sa.select(sa.literal_column(AGGREGATES)).select_from(base)
    names = list(keys)
    listed = ", ".join(names)
    select: list[sa.ColumnElement[Any]] = [sa.literal_column(name) for name in names]
    select.append(sa.literal_column(f"GROUPING({listed}) != 0 AS m_total"))
    select.append(sa.literal_column(AGGREGATES))
    return (
        sa.select(*select)
        .select_from(base)
        .group_by(sa.text(f"GROUPING SETS (({listed}), ())"))
        .order_by(sa.text(f"m_total DESC, {_order(names)}"))
        .limit(MAX_ROWS + 1)
    )


def timeline_statement(query: MetricsQuery) -> sa.Select[Any]:
    """``overview.build_timeline_sql``: the totals and, with ``bucket_s``, the series."""
    return metrics_statement(
        MetricsQuery(
            query.org_id,
            query.start_unix_ms,
            query.end_unix_ms,
            bucket_s=query.bucket_s,
            filter=query.filter,
        )
    )


# overview._SETS in Postgres
_BREAKDOWN_KEYS: dict[str, sa.ColumnElement[object]] = {
    "model": requests.c.model,
    "status": sa.cast(requests.c.status, sa.Text()),
    "user": requests.c.user_id,
}


def breakdowns_statement(query: MetricsQuery) -> sa.Select[Any]:
    """``overview.build_breakdowns_sql``: models, statuses and users with ``COUNTS`` only."""
    base = _base(query, {f"k_{name}": key for name, key in _BREAKDOWN_KEYS.items()})
    select: list[sa.ColumnElement[Any]] = [
        sa.literal_column(f"k_{name}") for name in _BREAKDOWN_KEYS
    ]
    select += [sa.literal_column(f"GROUPING(k_{name}) AS g_{name}") for name in _BREAKDOWN_KEYS]
    select.append(sa.literal_column(COUNTS))
    sets = ", ".join(f"(k_{name})" for name in _BREAKDOWN_KEYS)
    return sa.select(*select).select_from(base).group_by(sa.text(f"GROUPING SETS ({sets})"))
