"""The batch upsert at the driver: SQLAlchemy's statement, our own parameter loop.

``upsert.upsert_statement`` stays the one definition of the upsert (columns, ``ON CONFLICT``,
the claims ``WHERE``). It is compiled once per engine; each batch then goes to the driver's
``executemany`` (sqlite3; psycopg 3, which pipelines it) as plain tuples. The parameters are what
SQLAlchemy would have bound: the same bind processors (JSON encoding, psycopg's ``Jsonb``, SQLite's
floats and booleans), applied only to the columns that have one. SQLAlchemy's generic per-row,
per-column parameter processing was a fifth of the consumer's time in the profile
(benchmarks/RESULTS.md); this is the same SQL with the same values, without it.

On Postgres a batch of more than one row goes another way: ``COPY`` into a temporary staging
table of the connection (created once, emptied at each commit), then the same upsert as one
``INSERT ... SELECT`` from it. Same columns, same ``ON CONFLICT ... WHERE``, same row count; the
server parses, plans and runs one statement instead of one per row, which took about a fifth off
its CPU per row (docs/decisions/2026-12-02-copy-upsert.md). One row (the row-by-row search for a
bad row) keeps the plain statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from llmtap.stores.records.engine import json_text
from llmtap.stores.records.schema import requests
from llmtap.stores.row import RequestRow

# keep the driver's row count after SQLAlchemy closes the cursor of a statement without rows
_ROWCOUNT = {"preserve_rowcount": True}
_PYFORMAT = re.compile(r"%\((\w+)\)s")
_VALUES = re.compile(r"VALUES \([^()]*\)")  # one row of marks, with or without casts
# column types whose SQLite bind processor changes nothing SQLite would not do itself
_AS_STORED = (sa.Boolean, sa.Float)
_STAGE = "pg_temp.llmtap_upsert_stage"
# ``ON COMMIT DELETE ROWS``: a rolled-back or committed batch leaves nothing for the next one
_CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (LIKE requests) ON COMMIT DELETE ROWS"
)


class BulkUpsert:
    """The compiled upsert of ``statement`` for ``dialect``, and its parameter maker."""

    def __init__(self, dialect: sa.Dialect, statement: sa.Insert) -> None:
        # the logged fields only: ``tx`` is the statement's own (a default or an expression)
        compiled = statement.compile(
            dialect=dialect, column_keys=list(RequestRow.__struct_fields__)
        )
        sql = str(compiled)
        if compiled.positiontup is not None:  # qmark (sqlite3): already positional
            names = list(compiled.positiontup)
        else:  # pyformat (psycopg): the same text with positional marks
            names = _PYFORMAT.findall(sql)
            sql = _PYFORMAT.sub("%s", sql)
        self.sql = sql
        self._copy: tuple[str, str] | None = None
        if dialect.name == "postgresql" and compiled.positiontup is None:
            columns = ", ".join(dialect.identifier_preparer.quote(n) for n in names)
            select = f"SELECT {columns} FROM {_STAGE}"
            staged, found = _VALUES.subn(select, sql, count=1)
            if found:
                self._copy = (f"COPY {_STAGE} ({columns}) FROM STDIN", staged)
        self._values: Callable[[RequestRow], tuple[Any, ...]] = attrgetter(*names)
        self._raw = dialect.name == "sqlite"
        self._processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            column = requests.c[name]
            if self._raw and isinstance(column.type, _AS_STORED):
                # SQLite stores a bool as 1/0 and an int in a REAL column as a float by itself
                # (column affinity): SQLAlchemy's processors only did it first, per value
                continue
            if self._raw and isinstance(column.type, sa.JSON):
                # what the engine's JSON processor ends in (``engine.json_text``) for the
                # dicts these columns hold, without its per-value dispatch
                self._processors.append((index, json_text))
                continue
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._processors.append((index, process))

    def params(self, row: RequestRow) -> tuple[Any, ...]:
        """The row's parameters as SQLAlchemy would bind them (``TypeError``/``ValueError``
        when a value cannot be bound: the row's fault)."""
        values = self._values(row)
        if not self._processors:
            return values
        out = list(values)
        for index, process in self._processors:
            out[index] = process(out[index])
        return tuple(out)

    def execute(self, conn: sa.Connection, rows: Sequence[RequestRow]) -> int:
        """Upsert ``rows`` (one per key) on ``conn``; how many the ``WHERE`` let through."""
        params = [self.params(row) for row in rows]
        if self._copy is not None and len(params) > 1:
            return _copy_in(conn, *self._copy, params)
        if self._raw:
            return raw_executemany(conn, self.sql, params)
        if len(params) == 1:
            result = conn.exec_driver_sql(self.sql, params[0], execution_options=_ROWCOUNT)
        else:
            result = conn.exec_driver_sql(self.sql, params, execution_options=_ROWCOUNT)
        return int(result.rowcount)


def raw_executemany(conn: sa.Connection, sql: str, params: list[tuple[Any, ...]]) -> int:
    """``sql`` over ``params`` straight on ``conn``'s sqlite3 connection, in its transaction;
    the summed row count. SQLAlchemy's ``exec_driver_sql`` around the same call was its
    execution context, result and cursor wrapping, per batch and per claims lookup."""
    raw = conn.connection.driver_connection
    assert raw is not None
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cur = raw.cursor()
    try:
        if len(params) == 1:
            cur.execute(sql, params[0])
        else:
            cur.executemany(sql, params)
        return int(cur.rowcount)
    except dbapi_error as err:
        # the store's error boundary (engine.WRITE_ERRORS) sorts SQLAlchemy's classes: a
        # constraint is a row's error, a locked or broken database an outage
        raise exc.DBAPIError.instance(sql, None, err, dbapi_error) from err
    finally:
        cur.close()


def raw_select(conn: sa.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows of a read on ``conn``'s sqlite3 connection (errors as ``raw_executemany``)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cur = raw.cursor()
    try:
        return list(cur.execute(sql, params))
    except dbapi_error as err:
        raise exc.DBAPIError.instance(sql, None, err, dbapi_error) from err
    finally:
        cur.close()


def _copy_in(
    conn: sa.Connection, copy_sql: str, insert_sql: str, params: list[tuple[Any, ...]]
) -> int:
    """``params`` into the staging table, then the upsert from it; its row count."""
    # every batch: a table created in a transaction that rolled back is gone again
    conn.exec_driver_sql(_CREATE_STAGE)
    raw = conn.connection.driver_connection
    assert raw is not None
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cur = raw.cursor()
    try:
        with cur.copy(copy_sql) as copy:
            for values in params:
                copy.write_row(values)
    except dbapi_error as err:
        # what SQLAlchemy does for its own statements: the store's error boundary
        # (engine.WRITE_ERRORS) sorts row errors from outages, and a dead connection leaves the pool
        if conn.dialect.is_disconnect(err, raw, cur):
            conn.invalidate(err)
        raise exc.DBAPIError.instance(copy_sql, None, err, dbapi_error) from err
    finally:
        cur.close()
    result = conn.exec_driver_sql(insert_sql, execution_options=_ROWCOUNT)
    return int(result.rowcount)
