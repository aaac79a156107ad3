"""The batch upsert at the driver: SQLAlchemy's statement, our own parameter loop.

``upsert.upsert_statement`` stays the one definition of the upsert (columns, ``ON CONFLICT``,
the claims ``WHERE``). It is compiled once per engine; each batch then goes to the driver's
``executemany`` (sqlite3; psycopg 3, which pipelines it) as plain tuples. The parameters are what
SQLAlchemy would have bound: the same bind processors (JSON encoding, psycopg's ``Jsonb``, SQLite's
floats and booleans), applied only to the columns that have one. SQLAlchemy's generic per-row,
per-column parameter processing was a fifth of the consumer's time in the profile
(benchmarks/RESULTS.md); this is the same SQL with the same values, without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import sqlalchemy as sa

from llmtap.stores.records.schema import requests
from llmtap.stores.row import RequestRow

# keep the driver's row count after SQLAlchemy closes the cursor of a statement without rows
_ROWCOUNT = {"preserve_rowcount": True}
_PYFORMAT = re.compile(r"%\((\w+)\)s")


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
        self._values: Callable[[RequestRow], tuple[Any, ...]] = attrgetter(*names)
        self._processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            column = requests.c[name]
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
        if len(params) == 1:
            result = conn.exec_driver_sql(self.sql, params[0], execution_options=_ROWCOUNT)
        else:
            result = conn.exec_driver_sql(self.sql, params, execution_options=_ROWCOUNT)
        return int(result.rowcount)
