"""The Overview's panels from two reads of the table, each aggregating only what it shows.

The dashboard's Overview shows, for one range and filter: the totals, a series per bucket
(requests ok/error, cost, tokens, latency and TTFT percentiles), errors by status, models by
requests and by cost, the top users and the unpriced share. Two queries answer it, each with
``FINAL`` collapsing redelivered copies first, as in ``metrics.py``:

* the **timeline**: every figure (exact percentiles, distinct users) per bucket, and the totals
  as the buckets' states merged (``ROLLUP``): exact, since every aggregate here merges exactly
  (sums and counts add, a ``quantilesExact`` state is the values themselves, a ``uniqExact``
  state the set of user hashes); for ~100-200 buckets it measured a little faster and ~20 MB
  lighter than a second grouping set;
* the **breakdowns**: requests, errors and cost (``metrics.COUNTS``) per model, per status and
  per user, three ``GROUPING SETS`` of one scan. Their panels show nothing else, so nothing
  else is computed: exact percentiles keep every value of every group, and for 5,000 users
  over a week that was most of the Overview's time and memory; the eight token sums were
  another ~40% of this scan (decision note 2026-12-01-dashboard-queries). Each figure is what
  its own metrics query gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmtap.stores.analytics.metrics import (
    _AGGREGATES,
    _BUCKET,
    COUNTS,
    FINAL_SETTINGS,
    Metrics,
    MetricsQuery,
    _where,
    metrics_of,
    nothing,
)

TOP = 10
"""Users kept in ``top_users`` (by requests)."""

# breakdown name -> the key expression it groups by
_SETS: dict[str, str] = {
    "model": "model",
    "status": "toString(status)",
    "user": "user_id",
}


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One group's requests, errors and cost (the Overview's tables show no more)."""

    group: str | None
    """The model, status (as text) or user; ``None`` for calls without one."""
    requests: int
    errors: int
    cost_nano_usd: int
    priced_requests: int
    unpriced_requests: int


@dataclass(frozen=True, slots=True)
class Overview:
    totals: Metrics
    series: list[Metrics] = field(default_factory=list)
    """Per bucket, oldest first (``bucket_start_unix_ms`` set); empty without ``bucket_s``."""
    models: list[Breakdown] = field(default_factory=list)
    """Every model, most requests first."""
    statuses: list[Breakdown] = field(default_factory=list)
    """Every status (as text), most requests first."""
    top_users: list[Breakdown] = field(default_factory=list)
    """The ``TOP`` users with the most requests, most first."""


def build_timeline_sql(query: MetricsQuery) -> tuple[str, dict[str, Any]]:
    """The totals and, with ``bucket_s``, the series: one aggregation (``ROLLUP``)."""
    params: dict[str, Any] = {}
    where = _where(query, params)
    if query.bucket_s is None:
        return f"SELECT {_AGGREGATES}{where} SETTINGS {FINAL_SETTINGS}", params
    params["bucket_s"] = query.bucket_s
    sql = (
        f"SELECT {_BUCKET} AS bucket_start, grouping({_BUCKET}) != 0 AS m_total, {_AGGREGATES}"
        f"{where} GROUP BY ROLLUP({_BUCKET})"
        f" SETTINGS {FINAL_SETTINGS}, group_by_use_nulls = 1"
    )
    return sql, params


def build_breakdowns_sql(query: MetricsQuery) -> tuple[str, dict[str, Any]]:
    """Models, statuses and users with ``COUNTS`` only, from one scan."""
    params: dict[str, Any] = {}
    select = [f"{expression} AS k_{name}" for name, expression in _SETS.items()]
    # grouping(x) is 1 when the row is aggregated over x: a row of set "model" has 0 for model
    select += [f"grouping({expression}) AS g_{name}" for name, expression in _SETS.items()]
    select.append(COUNTS)
    groups = ", ".join(f"({expression})" for expression in _SETS.values())
    sql = (
        f"SELECT {', '.join(select)}{_where(query, params)}"
        f" GROUP BY GROUPING SETS ({groups})"
        f" SETTINGS {FINAL_SETTINGS}, group_by_use_nulls = 1"
    )
    return sql, params


def breakdown_of(row: dict[str, Any], group: Any) -> Breakdown:
    return Breakdown(
        group=None if group is None else str(group),
        requests=int(row["m_requests"]),
        errors=int(row["m_errors"]),
        cost_nano_usd=int(row["m_cost_nano"]),
        priced_requests=int(row["m_priced"]),
        unpriced_requests=int(row["m_unpriced"]),
    )


def overview_of(
    timeline: list[dict[str, Any]], breakdowns: list[dict[str, Any]], top: int = TOP
) -> Overview:
    """The two queries' rows, sorted into panels."""
    totals: Metrics | None = None
    series: list[Metrics] = []
    for row in timeline:
        if row.get("m_total", True):
            totals = metrics_of({**row, "bucket_start": None})
        else:
            series.append(metrics_of(row))
    if totals is None:  # no calls: ROLLUP gives no row at all
        totals = nothing()
    panels: dict[str, list[Breakdown]] = {name: [] for name in _SETS}
    for row in breakdowns:
        [name] = [name for name in _SETS if not row[f"g_{name}"]]
        panels[name].append(breakdown_of(row, row[f"k_{name}"]))
    by_requests = lambda b: (-b.requests, b.group or "")  # noqa: E731
    return Overview(
        totals=totals,
        series=sorted(series, key=lambda m: m.bucket_start_unix_ms or 0),
        models=sorted(panels["model"], key=by_requests),
        statuses=sorted(panels["status"], key=by_requests),
        top_users=sorted((b for b in panels["user"] if b.group is not None), key=by_requests)[:top],
    )
