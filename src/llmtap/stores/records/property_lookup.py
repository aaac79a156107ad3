"""Property names and values for the dashboard's look-ups, a few at a time.

A filter builder offers the custom properties an organization logged as someone types: never
every distinct value up front (millions of user ids, trace ids). Each look-up reads at most the
``scan_rows`` newest calls of the time range, keeps the names or values containing the typed text
(case-insensitive) and returns at most ``limit`` of them, sorted, so its cost is bounded whatever
the table holds. A name or value logged only in older calls of a very busy range is not offered;
it can still be typed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from llmtap.stores.records.engine import translated


@dataclass(frozen=True, slots=True)
class Lookup:
    org_id: str
    start_unix_ms: float
    end_unix_ms: float
    contains: str = ""
    limit: int = 20
    scan_rows: int = 20_000


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_RECENT = (
    "SELECT properties FROM requests WHERE org_id = :org"
    " AND created_unix_ms >= :start AND created_unix_ms < :end"
    " ORDER BY created_unix_ms DESC LIMIT :scan"
)
# the property name is always a bound parameter; LIKE patterns escape their wildcards
_SQL = {
    ("sqlite", "names"): (
        f"SELECT DISTINCT each.key AS v FROM ({_RECENT}) AS recent, json_each(recent.properties) AS each"
        " WHERE (:pattern = '' OR lower(each.key) LIKE :pattern ESCAPE '\\') ORDER BY v LIMIT :limit"
    ),
    ("postgresql", "names"): (
        f"SELECT DISTINCT k.v FROM ({_RECENT}) AS recent, jsonb_object_keys(recent.properties) AS k(v)"
        " WHERE (:pattern = '' OR lower(k.v) LIKE :pattern ESCAPE '\\') ORDER BY k.v LIMIT :limit"
    ),
    ("sqlite", "values"): (
        f"SELECT DISTINCT CAST(each.value AS TEXT) AS v FROM ({_RECENT}) AS recent,"
        " json_each(recent.properties) AS each WHERE each.key = :name"
        " AND (:pattern = '' OR lower(CAST(each.value AS TEXT)) LIKE :pattern ESCAPE '\\')"
        " ORDER BY v LIMIT :limit"
    ),
    ("postgresql", "values"): (
        f"SELECT DISTINCT recent.properties ->> :name AS v FROM ({_RECENT}) AS recent"
        " WHERE recent.properties ->> :name IS NOT NULL"
        " AND (:pattern = '' OR lower(recent.properties ->> :name) LIKE :pattern ESCAPE '\\')"
        " ORDER BY v LIMIT :limit"
    ),
}


def _run(engine: sa.Engine, kind: str, lookup: Lookup, name: str = "") -> list[str]:
    sql = sa.text(_SQL[(engine.dialect.name, kind)])
    params = {
        "org": lookup.org_id,
        "start": lookup.start_unix_ms,
        "end": lookup.end_unix_ms,
        "scan": lookup.scan_rows,
        "limit": lookup.limit,
        "pattern": _like(lookup.contains) if lookup.contains else "",
        "name": name,
    }
    with translated(f"look up property {kind}"), engine.connect() as conn:
        return [str(v) for v in conn.execute(sql, params).scalars() if v is not None]


def property_names(engine: sa.Engine, lookup: Lookup) -> list[str]:
    return _run(engine, "names", lookup)


def property_values(engine: sa.Engine, lookup: Lookup, name: str) -> list[str]:
    return _run(engine, "values", lookup, name)
