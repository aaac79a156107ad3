"""The Overview's panels from one read of the table.

The dashboard's Overview shows, for one range and filter: the totals, a series per bucket
(requests ok/error, cost, tokens, latency and TTFT percentiles), errors by status, models by
requests and by cost, the top users and the unpriced share. Asked as separate metrics queries
that is six scans of the range; here ``GROUPING SETS`` aggregates every panel's groups from one
scan. Each set is aggregated on its own, so every number is what its own query would give
(exact percentiles, distinct users), and ``FINAL`` collapses redelivered copies first, as in
``metrics.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmtap.stores.analytics.metrics import (
    _AGGREGATES,
    _BUCKET,
    FINAL_SETTINGS,
    Metrics,
    MetricsQuery,
    _where,
    metrics_of,
)

TOP = 10
"""Users kept in ``top_users`` (by requests)."""

# set name -> the key expression it groups by (``None``: the totals)
_SETS: dict[str, str] = {
    "bucket": _BUCKET,
    "model": "model",
    "status": "toString(status)",
    "user": "user_id",
}


@dataclass(frozen=True, slots=True)
class Overview:
    totals: Metrics
    series: list[Metrics] = field(default_factory=list)
    """Per bucket, oldest first (``bucket_start_unix_ms`` set); empty without ``bucket_s``."""
    models: list[Metrics] = field(default_factory=list)
    """Every model (``group``), most requests first."""
    statuses: list[Metrics] = field(default_factory=list)
    """Every status (``group``, as text), most requests first."""
    top_users: list[Metrics] = field(default_factory=list)
    """The ``TOP`` users with the most requests (``group``), most first."""


def build_overview_sql(query: MetricsQuery) -> tuple[str, dict[str, Any]]:
    """One SELECT for every panel of ``query`` (its ``group_by`` is ignored)."""
    params: dict[str, Any] = {}
    sets = dict(_SETS)
    if query.bucket_s is None:
        del sets["bucket"]
    else:
        params["bucket_s"] = query.bucket_s
    select = [f"{expression} AS k_{name}" for name, expression in sets.items()]
    # grouping(x) is 1 when the row is aggregated over x: a row of set "model" has 0 for model
    select += [f"grouping({expression}) AS g_{name}" for name, expression in sets.items()]
    select.append(_AGGREGATES)
    groups = ", ".join(f"({expression})" for expression in sets.values())
    sql = (
        f"SELECT {', '.join(select)}{_where(query, params)}"
        f" GROUP BY GROUPING SETS ((), {groups})"
        f" SETTINGS {FINAL_SETTINGS}, group_by_use_nulls = 1"
    )
    return sql, params


def overview_of(rows: list[dict[str, Any]], bucketed: bool, top: int = TOP) -> Overview:
    """``build_overview_sql``'s rows, sorted into panels."""
    names = [name for name in _SETS if bucketed or name != "bucket"]
    totals: Metrics | None = None
    panels: dict[str, list[Metrics]] = {name: [] for name in names}
    for row in rows:
        grouped = [name for name in names if not row[f"g_{name}"]]
        if not grouped:
            totals = metrics_of(row)
            continue
        [name] = grouped
        key = row[f"k_{name}"]
        if name == "bucket":
            panels[name].append(metrics_of({**row, "bucket_start": key}))
        else:
            panels[name].append(metrics_of({**row, "group_key": key}))
    assert totals is not None, "the totals row is always there"
    by_requests = lambda m: (-m.requests, m.group or "")  # noqa: E731
    return Overview(
        totals=totals,
        series=sorted(panels.get("bucket", []), key=lambda m: m.bucket_start_unix_ms or 0),
        models=sorted(panels["model"], key=by_requests),
        statuses=sorted(panels["status"], key=by_requests),
        top_users=sorted((m for m in panels["user"] if m.group is not None), key=by_requests)[:top],
    )
