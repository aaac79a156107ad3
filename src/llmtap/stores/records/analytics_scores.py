"""``stores/analytics/score_metrics.py`` in Postgres: score figures per name over the calls a
metrics query selects, from the records store's own ``scores`` table.

In ``records://`` mode there is no analytics store for the consumer's ``ScoreSync`` to fill, and
none is needed: the scores the API writes are already beside the calls. They are joined here on
(organization, request id), the calls side being the metrics query's own conditions
(organization first, range, filter), so a score counts exactly when its call does: a score
posted for a call that was never logged, or another organization's score on the same request
id, counts nothing. The table keeps one row per (organization, request id, name) (an upsert):
nothing to collapse.

The sum is taken over the values in ascending order, as chDB's ``arraySum(arraySort(...))``
does: a floating-point sum depends on its order, and this one order gives both engines the
same bits (``tests/contract/test_records_analytics.py``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llmtap.stores.analytics.metrics import MAX_ROWS, MetricsQuery
from llmtap.stores.records.analytics_sql import (
    BYTEWISE,
    bucket_of,
    conditions,
    group_expression,
)
from llmtap.stores.records.schema import requests, scores

_FIGURES = (
    "count(*) AS m_count, sum(s_value ORDER BY s_value) AS m_sum,"
    " min(s_value) AS m_min, max(s_value) AS m_max"
)


def any_scores_statement(org_id: str) -> sa.Select[Any]:
    """Whether the organization has any score (the table's key starts with the organization):
    without one the join is not run, as ``score_metrics.any_scores_sql``."""
    return sa.select(sa.literal(1).label("found")).where(scores.c.org_id == org_id).limit(1)


def score_statement(query: MetricsQuery) -> sa.Select[Any]:
    """The rows ``score_metrics.result_of`` reads: per score name, over every call of the
    query (``m_total``) and, with buckets or a group, per bucket and group."""
    keys: dict[str, sa.ColumnElement[object]] = {}
    if query.bucket_s is not None:
        keys["bucket_start"] = bucket_of(query.bucket_s)
    group = group_expression(query.group_by)
    if group is not None:
        keys["group_key"] = group
    # an alias: a score filter's EXISTS over ``scores`` must not correlate with the joined side
    scored = scores.alias("scored")
    joined = requests.join(
        scored,
        sa.and_(
            scored.c.org_id == requests.c.org_id,
            scored.c.request_id == requests.c.request_id,
        ),
    )
    columns: list[sa.ColumnElement[Any]] = [expr.label(name) for name, expr in keys.items()]
    columns += [scored.c.name.label("s_name"), scored.c.value.label("s_value")]
    where = conditions(query.org_id, query.start_unix_ms, query.end_unix_ms, query.filter)
    base = sa.select(*columns).select_from(joined).where(*where).subquery("base")
    names = list(keys)
    select: list[sa.ColumnElement[Any]] = [sa.literal_column(name) for name in names]
    select.append(sa.literal_column("s_name AS score_name"))
    if names:
        select.append(sa.literal_column(f"GROUPING({', '.join(names)}) != 0 AS m_total"))
    select.append(sa.literal_column(_FIGURES))
    statement = sa.select(*select).select_from(base)
    if not names:
        statement = statement.group_by(sa.text("s_name")).order_by(sa.text(f"s_name {BYTEWISE}"))
    else:
        listed = ", ".join(names)
        ordered = ", ".join(f"{n} {BYTEWISE}" if n == "group_key" else n for n in names)
        statement = statement.group_by(
            sa.text(f"GROUPING SETS (({listed}, s_name), (s_name))")
        ).order_by(sa.text(f"m_total DESC, {ordered}, s_name {BYTEWISE}"))
    return statement.limit(MAX_ROWS + 1)
