"""chDB: the ClickHouse engine inside this process, tables on disk under one directory.

chDB runs one embedded server per process, on one data directory: a second process on the same
directory is refused (``StoreUnavailable``: the other one may be shutting down), and so is a
second directory in the same process. Sessions on the same directory share that server.

Query parameters reach the engine as text it reads in ClickHouse's *escaped* format (as the HTTP
interface's ``param_<name>``), where ``\\`` starts an escape and ``\\N`` is NULL: chDB passes them
on as given, so every value is encoded here (clickhouse-connect does the same for a server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from chdb import session as chdb_session

from llmtap.errors import StoreUnavailable
from llmtap.private_files import private_root
from llmtap.stores.analytics.client import SESSION_SETTINGS, classify

_decode_row = msgspec.json.Decoder(dict[str, Any])
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def escaped(value: Any) -> str:
    """``value`` as ClickHouse's escaped format spells it, so the engine reads back exactly it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    raise TypeError(f"no escaped form for a query parameter of type {type(value).__name__}")


class ChdbClient:
    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        # chDB creates its files with the process umask; a 0700 directory keeps them to us anyway
        private_root(self.path)
        try:
            self._session = chdb_session.Session(str(self.path))  # type: ignore[no-untyped-call]
        except RuntimeError as err:
            raise StoreUnavailable(
                f"analytics store: cannot open chDB at {self.path} (one process per data "
                f"directory, one directory per process): {err}"
            ) from err
        self.command(SESSION_SETTINGS)

    def command(self, sql: str) -> None:
        self._run(sql, "CSV", None, "run DDL")

    def insert_json_each_row(self, table: str, data: bytes) -> None:
        # the rows follow the statement as format data: parsed by the JSON reader in bulk,
        # never as SQL expressions (which is orders of magnitude slower)
        self._run(f"INSERT INTO {table} FORMAT JSONEachRow\n{data.decode()}", "CSV", None, "insert")

    def query_rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        encoded = {name: escaped(value) for name, value in params.items()}
        result = self._run(sql, "JSONEachRow", encoded, "query")
        return [_decode_row.decode(line) for line in result.bytes().splitlines() if line]

    def _run(self, sql: str, fmt: str, params: dict[str, Any] | None, what: str) -> Any:
        try:
            return self._session.query(sql, fmt, params=params)  # type: ignore[no-untyped-call]
        except RuntimeError as err:  # chdb.ChdbError is a RuntimeError
            raise classify(str(err), what) from err

    def close(self) -> None:
        self._session.close()  # type: ignore[no-untyped-call]
