"""Pages of logged calls for exports: the search's rows without the headers, as plain dicts.

An export reads every matching call, so the per-row cost decides its speed: this read selects
every column but the two header maps (which exports do not carry), skips building a
``RequestRow`` and SQLAlchemy's per-row mappings (each row is one ``dict(zip(...))``), and
decodes the properties' JSON text with msgspec rather than the dialect's ``json.loads``. The
filter, sort and keyset are the reader's (same sort expressions, the organization first in the
WHERE); the keyset is a row-value comparison, which both databases answer as a range of the
sort index.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from llmtap.stores.records.engine import translated
from llmtap.stores.records.filter_sql import to_sql
from llmtap.stores.records.reader import _SORT_KEYS, PageQuery
from llmtap.stores.records.schema import TX, requests

# the API's list rows: headers and the attempts of a retried call are on the detail only
EXPORT_COLUMNS = tuple(
    column
    for column in requests.c
    # ``TX`` is the outbox cursor's bookkeeping (schema.py), not a logged field
    if column.name not in ("request_headers", "response_headers", "attempt_log", TX)
)
_decode = msgspec.json.Decoder()


def _selected(names: tuple[str, ...]) -> tuple[sa.ColumnElement[Any], ...]:
    # the properties as the database gives them (SQLite: JSON text; psycopg: already a dict)
    return tuple(
        sa.type_coerce(requests.c[name], sa.Text).label(name)
        if name == "properties"
        else requests.c[name]
        for name in names
    )


def export_page(
    engine: sa.Engine, query: PageQuery, columns: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Up to ``query.limit`` calls after ``query.after``, as dicts of ``columns`` (default: every
    column but the headers; fewer columns are read faster). No text leaves: the caller searches
    bodies through ``RequestSearch``."""
    names = columns or tuple(column.name for column in EXPORT_COLUMNS)
    key = _SORT_KEYS[query.sort]
    conditions: list[sa.ColumnElement[bool]] = [requests.c.org_id == query.org_id]
    if query.after is not None:
        mine = sa.tuple_(key, requests.c.request_id)
        seen = sa.tuple_(sa.literal(query.after.value), sa.literal(query.after.request_id))
        # Before the filter: SQLite (no statistics) bounds the index range by the first usable
        # condition on the sort column, so with the time range first every page scanned from
        # the range's end down to its keyset: the n-th page read n pages of index (quadratic).
        conditions.append(mine < seen if query.descending else mine > seen)
    if query.filter is not None:
        conditions.append(to_sql(query.filter, engine.dialect.name))
    order = (
        (key.desc(), requests.c.request_id.desc())
        if query.descending
        else (key.asc(), requests.c.request_id.asc())
    )
    statement = sa.select(*_selected(names)).where(*conditions).order_by(*order).limit(query.limit)
    with translated("export requests"), engine.connect() as conn:
        fetched = conn.execute(statement).fetchall()  # one fetchall, not a fetchone a row
    rows = [dict(zip(names, row, strict=True)) for row in fetched]
    if "properties" in names:
        for row in rows:
            properties = row["properties"]
            if isinstance(properties, str | bytes):
                row["properties"] = _decode.decode(properties)
    return rows
