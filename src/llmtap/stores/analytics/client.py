"""The one seam between the analytics store and a ClickHouse engine (chDB or a server).

Both engines speak the same SQL, take ``{name:Type}`` query parameters and ingest JSONEachRow
and JSONCompactEachRow, so the store is written once against this port and adapters only move bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from llmtap.errors import StoreError, StoreUnavailable


class ClickHouseClient(Protocol):
    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL)."""

    def insert_json_each_row(self, table: str, data: bytes) -> None:
        """Insert newline-separated JSON objects into ``table`` as one insert."""

    def insert_json_compact(self, table: str, columns: Sequence[str], data: bytes) -> None:
        """Insert newline-separated JSON arrays, values in ``columns`` order, as one insert
        (JSONCompactEachRow: no column names repeated on every row)."""

    def query_rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of a SELECT with ``{name:Type}`` parameters bound server-side."""

    def close(self) -> None: ...


# Inside expressions a column's own name means the column, even when the SELECT gives some
# aggregate that alias (``sum(cost_nano_usd) AS cost_nano_usd, countIf(cost_nano_usd IS NULL)``);
# ClickHouse's default would substitute the alias and refuse the nested aggregate.
SESSION_SETTINGS = "SET prefer_column_name_to_alias = 1"


class RowRejected(StoreError):
    """ClickHouse refused the data itself (cannot parse, out of range): a row-level problem."""


# error codes where the data, not the engine, is at fault
# (CANNOT_PARSE_*, TYPE_MISMATCH, CANNOT_CONVERT_TYPE, INCORRECT_DATA, ARGUMENT_OUT_OF_BOUND, ...)
_DATA_CODES = {6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 321}
# the engine is busy or short of something for now
# (TOO_MANY_PARTS, MEMORY_LIMIT_EXCEEDED, TOO_MANY_SIMULTANEOUS_QUERIES, TIMEOUT_EXCEEDED, ...),
# or its disk is: CANNOT_FSYNC, CANNOT_WRITE_TO_FILE_DESCRIPTOR, NOT_ENOUGH_SPACE. A full disk is an
# outage to wait out, not a refusal of the rows: those are already in the records store, and
# dead-lettering them would leave them there and not here (tests/integration/test_faults_full_disk.py)
_BUSY_CODES = {74, 75, 159, 202, 209, 210, 241, 243, 252, 425}
_CODE = re.compile(r"Code: (\d+)")


def classify(message: str, what: str) -> StoreError:
    """The llmtap error for a ClickHouse error message (they carry ``Code: N``)."""
    found = _CODE.search(message)
    code = int(found.group(1)) if found else -1
    short = message.strip().splitlines()[0][:500] if message.strip() else "unknown error"
    text = f"analytics store: cannot {what}: {short}"
    if code in _DATA_CODES:
        return RowRejected(text)
    if code in _BUSY_CODES:
        return StoreUnavailable(text)
    return StoreError(text)
