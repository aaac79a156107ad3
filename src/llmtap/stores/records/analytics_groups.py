"""``stores/analytics/groups.py`` (a page of sessions or users with their figures) in Postgres,
over the records store's ``requests`` table, with the same figures, sort and keyset.

Times are whole milliseconds, as ClickHouse's ``toUnixTimestamp64Milli`` gives them; a call's
latency is truncated to whole milliseconds (``toInt64``) before it is added to its start; the
session name is the newest call's (``argMax``); keys sort bytewise (``COLLATE "C"``). The page
after ``after`` is cut on the grouped rows (a derived table, since Postgres' ``HAVING`` cannot
name the output columns).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llmtap.stores.analytics.groups import MAX_PAGE, GroupQuery
from llmtap.stores.records.analytics_sql import BYTEWISE, conditions
from llmtap.stores.records.schema import requests

_KEY_COLUMN = {"session": "session_id", "user": "user_id"}
_SORT_COLUMN = {
    "last_seen": "g_last_ms",
    "first_seen": "g_first_ms",
    "requests": "g_requests",
    "cost": "g_cost_nano",
    "errors": "g_errors",
    "tokens": "g_tokens",
    "duration": "g_duration_ms",
}
_MS = "floor(created_unix_ms)"
_AGGREGATES = ", ".join(
    [
        "count(*) AS g_requests",
        "count(*) FILTER (WHERE status >= 400 OR status = 0 OR error IS NOT NULL) AS g_errors",
        "coalesce(sum(cost_nano_usd), 0)::bigint AS g_cost_nano",
        "coalesce(sum(input_tokens), 0)::bigint AS g_input_tokens",
        "coalesce(sum(output_tokens), 0)::bigint AS g_output_tokens",
        "coalesce(sum(total_tokens), 0)::bigint AS g_tokens",
        f"min({_MS})::bigint AS g_first_ms",
        f"max({_MS})::bigint AS g_last_ms",
        f"(max({_MS} + trunc(latency_ms)) - min({_MS}))::bigint AS g_duration_ms",
        "(array_agg(coalesce(session_name, '') ORDER BY created_unix_ms DESC))[1] AS g_name",
        "count(DISTINCT user_id) AS g_users",
    ]
)


def groups_statement(query: GroupQuery) -> sa.Select[Any]:
    column = requests.c[_KEY_COLUMN[query.key]]
    where = conditions(query.org_id, query.start_unix_ms, query.end_unix_ms, query.filter)
    grouped = (
        sa.select(column.label("g_key"), sa.literal_column(_AGGREGATES))
        .where(*where, column.is_not(None))
        .group_by(column)
        .subquery("grouped")
    )
    sort = sa.literal_column(_SORT_COLUMN[query.sort], sa.BigInteger())
    key = sa.literal_column(f"g_key {BYTEWISE}", sa.Text())
    statement: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(grouped)
    if query.after is not None:
        value = sa.literal(int(query.after.value), sa.BigInteger())
        after = sa.literal(query.after.key, sa.Text())
        if query.descending:
            statement = statement.where(sa.or_(sort < value, sa.and_(sort == value, key < after)))
        else:
            statement = statement.where(sa.or_(sort > value, sa.and_(sort == value, key > after)))
    order = (sort.desc(), key.desc()) if query.descending else (sort.asc(), key.asc())
    return statement.order_by(*order).limit(max(1, min(query.limit, MAX_PAGE)))
