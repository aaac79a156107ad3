"""Every read of logged calls from the records store: the CLI's and the API's.

Each read takes the caller's organization, first in the WHERE; ``None`` is only for the local
admin CLI, which sees everything. Pages are cut by keyset, not offset: ``after`` holds the sort
value and request id of the last row seen, so calls logged while someone pages never shift or
repeat what they see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from llmtap.stores.filter import Filter
from llmtap.stores.records.engine import translated
from llmtap.stores.records.filter_sql import to_sql
from llmtap.stores.records.schema import requests
from llmtap.stores.records.upsert import row_from_mapping
from llmtap.stores.row import RequestRow

SortField = Literal["created", "latency", "cost", "tokens"]
SORT_FIELDS: tuple[SortField, ...] = ("created", "latency", "cost", "tokens")

# Unknown cost/tokens sort below every known value (-1 < 0) instead of NULL's dialect-specific
# place, so the keyset comparison is the same plain comparison on both databases. The -1 is
# literal SQL, not a bound parameter: the expression must read exactly as the index on it
# (revision 0005), or the database sorts every row instead of walking the index.
_UNKNOWN: sa.ColumnElement[int] = sa.literal_column("-1")
_SORT_KEYS: dict[str, sa.ColumnElement[Any]] = {
    "created": requests.c.created_unix_ms,
    # never NULL: coalesce only makes it the expression its index holds (revision 0005)
    "latency": sa.func.coalesce(requests.c.latency_ms, _UNKNOWN),
    "cost": sa.func.coalesce(requests.c.cost_nano_usd, _UNKNOWN),
    "tokens": sa.func.coalesce(requests.c.total_tokens, _UNKNOWN),
}


def sort_value(sort: SortField, row: RequestRow) -> float | int:
    """The row's value of the sort key, as ``_SORT_KEYS`` computes it in SQL."""
    if sort == "created":
        return row.created_unix_ms
    if sort == "latency":
        return row.latency_ms
    if sort == "cost":
        return -1 if row.cost_nano_usd is None else row.cost_nano_usd
    return -1 if row.total_tokens is None else row.total_tokens


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the sort value and request id of its last row."""

    value: float | int
    request_id: str


@dataclass(frozen=True, slots=True)
class PageQuery:
    org_id: str
    filter: Filter | None = None
    sort: SortField = "created"
    descending: bool = True
    after: Position | None = None
    limit: int = 50
    offset: int = 0
    relax_text: bool = False
    """Text-in-bodies leaves match every row (the caller checks them on the candidates);
    otherwise they are refused (``FilterError``)."""


class RecordsReader:
    """The SELECTs over logged calls, on an engine its owner opened and closes."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def get(self, org_id: str | None, request_id: str) -> RequestRow | None:
        query = sa.select(requests).where(requests.c.request_id == request_id)
        if org_id is not None:
            query = query.where(requests.c.org_id == org_id)
        with translated("read request"), self._engine.connect() as conn:
            found = conn.execute(query.limit(1)).mappings().first()
        return None if found is None else row_from_mapping(found)

    def latest(
        self,
        org_id: str | None,
        limit: int,
        *,
        before_unix_ms: float | None = None,
        model: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> list[RequestRow]:
        """Calls newest first; ``before_unix_ms`` pages back in time (exclusive)."""
        query = sa.select(requests)
        if org_id is not None:
            query = query.where(requests.c.org_id == org_id)
        if before_unix_ms is not None:
            query = query.where(requests.c.created_unix_ms < before_unix_ms)
        if model is not None:
            query = query.where(requests.c.model == model)
        if user_id is not None:
            query = query.where(requests.c.user_id == user_id)
        if session_id is not None:
            query = query.where(requests.c.session_id == session_id)
        query = query.order_by(
            requests.c.created_unix_ms.desc(), requests.c.request_id.desc()
        ).limit(max(0, limit))
        with translated("read requests"), self._engine.connect() as conn:
            return [row_from_mapping(m) for m in conn.execute(query).mappings()]

    def count(self, org_id: str | None) -> int:
        query = sa.select(sa.func.count()).select_from(requests)
        if org_id is not None:
            query = query.where(requests.c.org_id == org_id)
        with translated("count requests"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def page(self, query: PageQuery) -> list[RequestRow]:
        """Up to ``limit`` rows matching the filter, in sort order, after ``after``."""
        key = _SORT_KEYS[query.sort]
        conditions: list[sa.ColumnElement[bool]] = [requests.c.org_id == query.org_id]
        if query.filter is not None:
            conditions.append(to_sql(query.filter, self.dialect, relax_text=query.relax_text))
        position = query.after
        if position is not None:
            # a row-value comparison, which both databases answer as a range of the sort index
            # (the equivalent OR of two conditions makes them scan from the top of it)
            mine = sa.tuple_(key, requests.c.request_id)
            seen = sa.tuple_(sa.literal(position.value), sa.literal(position.request_id))
            conditions.append(mine < seen if query.descending else mine > seen)
        order = (
            (key.desc(), requests.c.request_id.desc())
            if query.descending
            else (key.asc(), requests.c.request_id.asc())
        )
        statement = (
            sa.select(requests)
            .where(*conditions)
            .order_by(*order)
            .limit(query.limit)
            .offset(query.offset)
        )
        with translated("search requests"), self._engine.connect() as conn:
            return [row_from_mapping(m) for m in conn.execute(statement).mappings()]
