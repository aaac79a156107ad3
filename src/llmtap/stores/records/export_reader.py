"""Pages of logged calls for exports: the search's rows without the headers, as plain dicts.

An export reads every matching call, so the per-row cost decides its speed: this read selects
every column but the two header maps (which exports do not carry) and skips building a
``RequestRow``, about twice as fast as ``RecordsReader.page``. The filter, sort and keyset are
the reader's (same sort expressions, the organization first in the WHERE); the keyset is a
row-value comparison, which both databases answer as a range of the sort index.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llmtap.stores.records.engine import translated
from llmtap.stores.records.filter_sql import to_sql
from llmtap.stores.records.reader import _SORT_KEYS, PageQuery
from llmtap.stores.records.schema import requests

EXPORT_COLUMNS = tuple(
    column for column in requests.c if column.name not in ("request_headers", "response_headers")
)


def export_page(engine: sa.Engine, query: PageQuery) -> list[dict[str, Any]]:
    """Up to ``query.limit`` calls after ``query.after``, as dicts of their columns (no text
    leaves: the caller searches bodies through ``RequestSearch``)."""
    key = _SORT_KEYS[query.sort]
    conditions: list[sa.ColumnElement[bool]] = [requests.c.org_id == query.org_id]
    if query.filter is not None:
        conditions.append(to_sql(query.filter, engine.dialect.name))
    if query.after is not None:
        mine = sa.tuple_(key, requests.c.request_id)
        seen = sa.tuple_(sa.literal(query.after.value), sa.literal(query.after.request_id))
        conditions.append(mine < seen if query.descending else mine > seen)
    order = (
        (key.desc(), requests.c.request_id.desc())
        if query.descending
        else (key.asc(), requests.c.request_id.asc())
    )
    statement = sa.select(*EXPORT_COLUMNS).where(*conditions).order_by(*order).limit(query.limit)
    with translated("export requests"), engine.connect() as conn:
        return [dict(m) for m in conn.execute(statement).mappings()]
