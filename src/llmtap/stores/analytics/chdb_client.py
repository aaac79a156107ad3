"""chDB: the ClickHouse engine inside this process, tables on disk under one directory.

chDB runs one embedded server per process, on one data directory: a second process on the same
directory is refused (``StoreUnavailable``: the other one may be shutting down), and so is a
second directory in the same process. Sessions on the same directory share that server.

Memory: chDB's allocator (jemalloc) keeps what a query freed for the next one; after a week's
Overview that was ~250 MB the process never gave back. With ``release_above_mb``, a query that
leaves the process's resident memory above it is followed by ``SYSTEM JEMALLOC PURGE``.

Threads: every engine thread holds three ``/proc/self/task/<tid>/*`` files open for its
statistics. In chDB merged-away parts are removed at once (``old_parts_lifetime`` is 0) by a
cleanup every 30 s, and once more than ``concurrent_part_removal_threshold`` (100) wait, it
removes them with a pool of 128 threads that then stay, idle, for the life of the process: an
``llmtap serve`` backend went from 60 to 380 open files 30 s after it started (126 threads born
in the same second; benchmarks/RESULTS.md "Faults soak"). ``TABLE_SETTINGS`` keeps the removal
sequential (one disk, a few parts a second), and ``max_thread_pool_free_size`` lets idle workers
of the global pool beyond ``IDLE_WORKERS`` exit.

Query parameters reach the engine as text it reads in ClickHouse's *escaped* format (as the HTTP
interface's ``param_<name>``), where ``\\`` starts an escape and ``\\N`` is NULL: chDB passes them
on as given, so every value is encoded here (clickhouse-connect does the same for a server).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
IDLE_WORKERS = 16
"""Idle engine threads kept for the next query (the engine's own default is 1,000)."""
ENGINE_ARGS = {"max_thread_pool_free_size": IDLE_WORKERS}
"""Start-up arguments of the embedded engine (server settings; see ``Threads`` above)."""
TABLE_SETTINGS = {"concurrent_part_removal_threshold": 1_000_000_000}
"""Settings of llmtap's tables in chDB (see ``Threads`` above)."""


class ChdbClient:
    def __init__(self, path: Path, release_above_mb: int = 0) -> None:
        self.path = path.absolute()
        self.release_above_mb = release_above_mb
        # chDB creates its files with the process umask; a 0700 directory keeps them to us anyway
        private_root(self.path)
        if "?" in str(self.path):
            # chDB reads what follows a '?' as start-up arguments
            raise StoreUnavailable(f"analytics store: a chDB path may not contain '?': {self.path}")
        target = f"{self.path}?" + "&".join(f"{k}={v}" for k, v in ENGINE_ARGS.items())
        try:
            self._session = chdb_session.Session(target)  # type: ignore[no-untyped-call]
        except RuntimeError as err:
            raise StoreUnavailable(
                f"analytics store: cannot open chDB at {self.path} (one process per data "
                f"directory, one directory per process): {err}"
            ) from err
        self.command(SESSION_SETTINGS)

    def tune_table(self, table: str) -> None:
        """Apply ``TABLE_SETTINGS`` to one of llmtap's tables (after its migrations)."""
        pairs = ", ".join(f"{name} = {value}" for name, value in TABLE_SETTINGS.items())
        self.command(f"ALTER TABLE {table} MODIFY SETTING {pairs}")

    def command(self, sql: str) -> None:
        self._run(sql, "CSV", None, "run DDL")

    def insert_json_each_row(self, table: str, data: bytes) -> None:
        # the rows follow the statement as format data: parsed by the JSON reader in bulk,
        # never as SQL expressions (which is orders of magnitude slower)
        self._run(f"INSERT INTO {table} FORMAT JSONEachRow\n{data.decode()}", "CSV", None, "insert")

    def insert_json_compact(self, table: str, columns: Sequence[str], data: bytes) -> None:
        # columns are llmtap's own names (never input): the statement carries them as they are
        names = ", ".join(columns)
        sql = f"INSERT INTO {table} ({names}) FORMAT JSONCompactEachRow\n{data.decode()}"
        self._run(sql, "CSV", None, "insert")

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
