"""chDB: the ClickHouse engine inside this process, tables on disk under one directory.

chDB runs one embedded server per process, on one data directory: a second process on the same
directory is refused (``StoreUnavailable``: the other one may be shutting down), and so is a
second directory in the same process. Sessions on the same directory share that server.

Memory: chDB's allocator (jemalloc) keeps what a query freed for the next one; after a week's
Overview that was ~250 MB the process never gave back. With ``release_above_mb``, a query that
leaves the process's resident memory above it is followed by ``SYSTEM JEMALLOC PURGE``.

Query parameters reach the engine as text it reads in ClickHouse's *escaped* format (as the HTTP
interface's ``param_<name>``), where ``\\`` starts an escape and ``\\N`` is NULL: chDB passes them
on as given, so every value is encoded here (clickhouse-connect does the same for a server).
"""

from __future__ import annotations

import os
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


def resident_mb() -> float:
    """This process's resident memory (0 where ``/proc`` is not there)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * _PAGE_BYTES / 2**20


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ChdbClient:
    def __init__(self, path: Path, release_above_mb: int = 0) -> None:
        self.path = path.absolute()
        self.release_above_mb = release_above_mb
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
        rows = [_decode_row.decode(line) for line in result.bytes().splitlines() if line]
        del result
        if self.release_above_mb and resident_mb() > self.release_above_mb:
            self._run("SYSTEM JEMALLOC PURGE", "CSV", None, "release memory")
        return rows

    def _run(self, sql: str, fmt: str, params: dict[str, Any] | None, what: str) -> Any:
        try:
            return self._session.query(sql, fmt, params=params)  # type: ignore[no-untyped-call]
        except RuntimeError as err:  # chdb.ChdbError is a RuntimeError
            raise classify(str(err), what) from err

    def close(self) -> None:
        self._session.close()  # type: ignore[no-untyped-call]
