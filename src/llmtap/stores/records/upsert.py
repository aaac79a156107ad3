"""Idempotent batch writes of ``RequestRow``s: ``INSERT ... ON CONFLICT DO UPDATE``.

A redelivered or replayed row replaces the stored one, so writing the same batch any number of
times leaves the same rows. The batch goes in one transaction as one executemany; only if that
fails on a data error is it redone row by row, each in its own SAVEPOINT, to find the rows that
can never be stored (``PoisonRows``) and keep the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite

from llmtap.consumer.sink import PoisonRows
from llmtap.stores.records.engine import (
    WRITE_ERRORS,
    describe,
    is_row_error,
    translate,
    translated,
)
from llmtap.stores.records.schema import requests
from llmtap.stores.row import RequestRow

_KEY = ("org_id", "request_id")


def upsert_statement(dialect_name: str) -> sa.Insert:
    """The dialect's ``INSERT ... ON CONFLICT (org_id, request_id) DO UPDATE SET <all>``."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    stmt = insert(requests)
    updates = {c.name: stmt.excluded[c.name] for c in requests.columns if c.name not in _KEY}
    return stmt.on_conflict_do_update(index_elements=list(_KEY), set_=updates)


def row_params(row: RequestRow) -> dict[str, Any]:
    return msgspec.structs.asdict(row)


def row_from_mapping(mapping: sa.RowMapping) -> RequestRow:
    return RequestRow(**{str(k): v for k, v in mapping.items()})


def _last_per_key(rows: Sequence[RequestRow]) -> list[dict[str, Any]]:
    # Postgres refuses to update one row twice in a statement; the last copy is the newest.
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        latest[(row.org_id, row.request_id)] = row_params(row)
    return list(latest.values())


def write_rows(engine: sa.Engine, rows: Sequence[RequestRow]) -> None:
    """Upsert ``rows`` in one transaction; ``PoisonRows`` after storing the good ones."""
    if not rows:
        return
    params = _last_per_key(rows)
    stmt = upsert_statement(engine.dialect.name)
    try:
        with engine.begin() as conn:
            conn.execute(stmt, params)
        return
    except WRITE_ERRORS as err:
        if not is_row_error(err):
            assert isinstance(err, exc.SQLAlchemyError)  # every value error is a row's
            raise translate(err, "write batch") from err
    # some row is bad: find which, keep the others
    refused = _write_one_by_one(engine, stmt, params)
    if refused:
        raise PoisonRows(refused)


def _write_one_by_one(
    engine: sa.Engine, stmt: sa.Insert, params: list[dict[str, Any]]
) -> dict[str, str]:
    refused: dict[str, str] = {}
    with translated("write batch row by row"), engine.begin() as conn:
        for one in params:
            try:
                with conn.begin_nested():
                    conn.execute(stmt, one)
            except WRITE_ERRORS as err:
                if not is_row_error(err):
                    raise
                refused[one["request_id"]] = describe(err)
    return refused
