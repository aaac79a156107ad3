"""Sessions and users as a list: one row per session (or user) of an organization's calls in a
time range, sorted by any of its figures and paged by keyset.

``AnalyticsStore.metrics`` groups too, but it returns every group of the range at once (up to
50,000) and has no first/last-seen times; a list page needs the newest sessions first, a page at
a time. One SELECT per page: ``FINAL`` like the metrics, the organization first in the WHERE,
the sort expression chosen from an allow-list, every value a bound parameter. The page after
``after`` is cut in ``HAVING`` by the row value (sort value, group key), so pages never repeat
or skip a group however the figures tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from llmtap.stores.analytics.ddl import TABLE
from llmtap.stores.analytics.filter_clickhouse import to_clickhouse
from llmtap.stores.filter import Filter

GroupKey = Literal["session", "user"]
GroupSort = Literal["last_seen", "first_seen", "requests", "cost", "errors", "tokens", "duration"]
GROUP_SORTS: tuple[GroupSort, ...] = (
    "last_seen",
    "first_seen",
    "requests",
    "cost",
    "errors",
    "tokens",
    "duration",
)
MAX_PAGE = 1000

_KEY_COLUMN: dict[GroupKey, str] = {"session": "session_id", "user": "user_id"}
# aliases carry a ``g_`` prefix: never the name of a column (SESSION_SETTINGS prefers columns)
_SORT_EXPRESSION: dict[GroupSort, str] = {
    "last_seen": "g_last_ms",
    "first_seen": "g_first_ms",
    "requests": "g_requests",
    "cost": "g_cost_nano",
    "errors": "g_errors",
    "tokens": "g_tokens",
    "duration": "g_duration_ms",
}
_AGGREGATES = ", ".join(
    [
        "count() AS g_requests",
        "countIf(status >= 400 OR status = 0 OR error IS NOT NULL) AS g_errors",
        "toInt64(ifNull(sum(cost_nano_usd), 0)) AS g_cost_nano",
        "toInt64(ifNull(sum(input_tokens), 0)) AS g_input_tokens",
        "toInt64(ifNull(sum(output_tokens), 0)) AS g_output_tokens",
        "toInt64(ifNull(sum(total_tokens), 0)) AS g_tokens",
        "toInt64(min(toUnixTimestamp64Milli(created))) AS g_first_ms",
        "toInt64(max(toUnixTimestamp64Milli(created))) AS g_last_ms",
        "toInt64(max(toUnixTimestamp64Milli(created) + toInt64(latency_ms))"
        " - min(toUnixTimestamp64Milli(created))) AS g_duration_ms",
        "argMax(ifNull(session_name, ''), created) AS g_name",
        "uniqExact(user_id) AS g_users",
    ]
)


@dataclass(frozen=True, slots=True)
class GroupAfter:
    """Where a page ended: the last row's sort value and key."""

    value: int
    key: str


@dataclass(frozen=True, slots=True)
class GroupQuery:
    org_id: str
    key: GroupKey
    start_unix_ms: float
    end_unix_ms: float
    """Exclusive."""
    filter: Filter | None = None
    sort: GroupSort = "last_seen"
    descending: bool = True
    after: GroupAfter | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class GroupRow:
    key: str
    """The session id or user id."""
    name: str
    """The session's name (its newest call's); ``""`` without one or for users."""
    requests: int
    errors: int
    cost_nano_usd: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    first_unix_ms: int
    last_unix_ms: int
    duration_ms: int
    """From the first call's start to the end of the call that finished last."""
    users: int

    def sort_value(self, sort: GroupSort) -> int:
        return {
            "last_seen": self.last_unix_ms,
            "first_seen": self.first_unix_ms,
            "requests": self.requests,
            "cost": self.cost_nano_usd,
            "errors": self.errors,
            "tokens": self.total_tokens,
            "duration": self.duration_ms,
        }[sort]


def build_sql(query: GroupQuery) -> tuple[str, dict[str, Any]]:
    column = _KEY_COLUMN[query.key]
    sort = _SORT_EXPRESSION[query.sort]
    params: dict[str, Any] = {
        "org": query.org_id,
        "start": math.floor(query.start_unix_ms),
        "end": math.ceil(query.end_unix_ms),
    }
    sql = (
        f"SELECT {column} AS g_key, {_AGGREGATES} FROM {TABLE} FINAL"
        " WHERE org_id = {org:String}"
        " AND created >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')"
        " AND created < fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
        f" AND {column} IS NOT NULL"
    )
    if query.filter is not None:
        sql += f" AND {to_clickhouse(query.filter, params)}"
    sql += f" GROUP BY {column}"
    if query.after is not None:
        params["after_value"] = int(query.after.value)
        params["after_key"] = query.after.key
        cmp = "<" if query.descending else ">"
        sql += (
            f" HAVING ({sort} {cmp} {{after_value:Int64}})"
            f" OR ({sort} = {{after_value:Int64}} AND g_key {cmp} {{after_key:String}})"
        )
    direction = "DESC" if query.descending else "ASC"
    sql += f" ORDER BY {sort} {direction}, g_key {direction}"
    sql += f" LIMIT {max(1, min(query.limit, MAX_PAGE))}"
    return sql, params


def group_of(row: dict[str, Any]) -> GroupRow:
    return GroupRow(
        key=str(row["g_key"]),
        name=str(row["g_name"] or ""),
        requests=int(row["g_requests"]),
        errors=int(row["g_errors"]),
        cost_nano_usd=int(row["g_cost_nano"]),
        input_tokens=int(row["g_input_tokens"]),
        output_tokens=int(row["g_output_tokens"]),
        total_tokens=int(row["g_tokens"]),
        first_unix_ms=int(row["g_first_ms"]),
        last_unix_ms=int(row["g_last_ms"]),
        duration_ms=max(0, int(row["g_duration_ms"])),
        users=int(row["g_users"]),
    )
