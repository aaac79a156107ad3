"""Score figures for ``/v1/metrics``: per score name, over the calls a metrics query selects,
as totals and per bucket and group (the same keys as ``metrics.py``).

Scores live in their own table (``ddl.SCORES_TABLE``) and are joined to the calls here, at query
time: the calls side is the metrics query's own ``FROM llmtap_requests FINAL WHERE ...`` (range,
organization, filter), so a score counts exactly when its call does, and a score whose call has
not arrived counts nothing yet. Both sides are read ``FINAL``: a replaced score or a redelivered
call never counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmtap.stores.analytics.ddl import SCORES_TABLE
from llmtap.stores.analytics.metrics import (
    _BUCKET,
    FINAL_SETTINGS,
    MAX_ROWS,
    MetricsQuery,
    _group_expression,
    _where,
)

SeriesKey = tuple[int | None, str | None]
"""(bucket start in unix ms, group) of a series row, as ``metrics.Metrics`` carries them."""


@dataclass(frozen=True, slots=True)
class ScoreFigures:
    count: int
    """Calls with this score."""
    total: float
    minimum: float
    maximum: float

    @property
    def average(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class ScoreResult:
    totals: dict[str, ScoreFigures] = field(default_factory=dict)
    """Score name -> figures over every call of the query."""
    series: dict[SeriesKey, dict[str, ScoreFigures]] = field(default_factory=dict)


def any_scores_sql(org_id: str) -> tuple[str, dict[str, Any]]:
    """Whether the organization has any score at all (one granule of the table's sort key):
    without one, the join is not run, so metrics of an organization that never scores cost
    what they did before scores existed."""
    return (
        f"SELECT 1 AS found FROM {SCORES_TABLE} WHERE org_id = {{org:String}} LIMIT 1",
        {"org": org_id},
    )


def build_sql(query: MetricsQuery) -> tuple[str, dict[str, Any]]:
    """The calls of the metrics query (only their id and group keys) joined with the
    organization's scores, which are the join's right, in-memory side: far fewer rows."""
    params: dict[str, Any] = {}
    keys: list[str] = []
    inner: list[str] = ["request_id"]
    if query.bucket_s is not None:
        params["bucket_s"] = query.bucket_s
        inner.append(f"{_BUCKET} AS bucket_start")
        keys.append("bucket_start")
    group = _group_expression(query.group_by, params)
    if group is not None:
        inner.append(f"{group} AS group_key")
        keys.append("group_key")
    select = [*keys, "s_name AS score_name"]
    if keys:
        select.append(f"grouping({', '.join(keys)}) != 0 AS m_total")
    select.append(
        # summed in ascending order: a floating-point sum depends on its order, and ``sum``'s
        # (parallel partial sums) is not one the records store's Postgres can repeat
        "count() AS m_count, arraySum(arraySort(groupArray(s_value))) AS m_sum,"
        " min(s_value) AS m_min, max(s_value) AS m_max"
    )
    calls = f"SELECT {', '.join(inner)}{_where(query, params)}"
    scores = (
        "SELECT request_id AS s_request_id, name AS s_name, value AS s_value"
        f" FROM {SCORES_TABLE} FINAL WHERE org_id = {{org:String}}"
    )
    sql = (
        f"SELECT {', '.join(select)} FROM ({calls}) AS r"
        f" INNER JOIN ({scores}) AS s ON r.request_id = s.s_request_id"
    )
    settings = FINAL_SETTINGS
    if keys:
        expressions = ", ".join(keys)
        sql += (
            f" GROUP BY GROUPING SETS (({expressions}, s_name), (s_name))"
            f" ORDER BY m_total DESC, {expressions}, s_name"
        )
        settings += ", group_by_use_nulls = 1"
    else:
        sql += " GROUP BY s_name ORDER BY s_name"
    sql += f" LIMIT {MAX_ROWS + 1} SETTINGS {settings}"
    return sql, params


def result_of(rows: list[dict[str, Any]]) -> ScoreResult:
    result = ScoreResult()
    for row in rows:
        figures = ScoreFigures(
            count=int(row["m_count"]),
            total=float(row["m_sum"]),
            minimum=float(row["m_min"]),
            maximum=float(row["m_max"]),
        )
        name = str(row["score_name"])
        if "m_total" not in row or row["m_total"]:
            result.totals[name] = figures
            continue
        bucket = row.get("bucket_start")
        group = row.get("group_key")
        key = (None if bucket is None else int(bucket), None if group is None else str(group))
        result.series.setdefault(key, {})[name] = figures
    return result
