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
from llmtap.stores.records.schema import requests


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


def _recent(lookup: Lookup) -> sa.Subquery:
    return (
        sa.select(requests.c.properties)
        .where(
            requests.c.org_id == lookup.org_id,
            requests.c.created_unix_ms >= lookup.start_unix_ms,
            requests.c.created_unix_ms < lookup.end_unix_ms,
        )
        .order_by(requests.c.created_unix_ms.desc())
        .limit(lookup.scan_rows)
        .subquery("recent")
    )


def property_names(engine: sa.Engine, lookup: Lookup) -> list[str]:
    recent = _recent(lookup)
    if engine.dialect.name == "postgresql":
        key = sa.func.jsonb_object_keys(recent.c.properties).column_valued("key")
        name: sa.ColumnElement[str] = key
    else:
        each = sa.func.json_each(recent.c.properties).table_valued("key", "value")
        name = each.c.key
    query = sa.select(name).distinct().select_from(recent)
    if engine.dialect.name == "sqlite":
        query = query.join(each, sa.true())
    if lookup.contains:
        query = query.where(sa.func.lower(name).like(_like(lookup.contains), escape="\\"))
    query = query.order_by(name).limit(lookup.limit)
    with translated("look up property names"), engine.connect() as conn:
        return [str(v) for v in conn.execute(query).scalars() if v is not None]


def property_values(engine: sa.Engine, lookup: Lookup, name: str) -> list[str]:
    recent = _recent(lookup)
    if engine.dialect.name == "postgresql":
        value: sa.ColumnElement[str] = recent.c.properties.op("->>")(sa.bindparam("pname", name))
        query = sa.select(value).distinct().select_from(recent).where(value.is_not(None))
    else:
        each = sa.func.json_each(recent.c.properties).table_valued("key", "value")
        value = sa.cast(each.c.value, sa.Text())
        query = (
            sa.select(value)
            .distinct()
            .select_from(recent)
            .join(each, sa.true())
            .where(each.c.key == name)
        )
    if lookup.contains:
        query = query.where(sa.func.lower(value).like(_like(lookup.contains), escape="\\"))
    query = query.order_by(value).limit(lookup.limit)
    with translated("look up property values"), engine.connect() as conn:
        return [str(v) for v in conn.execute(query).scalars() if v is not None]
