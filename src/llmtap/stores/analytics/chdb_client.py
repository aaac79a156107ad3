"""chDB: the ClickHouse engine inside this process, tables on disk under one directory.

chDB runs one embedded server per process, on one data directory: a second process on the same
directory is refused (``StoreUnavailable``: the other one may be shutting down), and so is a
second directory in the same process. Sessions on the same directory share that server.

Memory: chDB's allocator (jemalloc) keeps what a query freed for the next one; after a week's
Overview that was ~250 MB the process never gave back. With ``release_above_mb``, a query that
leaves the process's resident memory above it is followed by ``SYSTEM JEMALLOC PURGE``.

Threads: every engine thread holds three ``/proc/self/task/<tid>/*`` files open for its
statistics. In chDB merged-away parts are removed (once ``old_parts_lifetime`` is over, set to a
minute here: chdb_repair.py) by a cleanup every 30 s, and once more than ``concurrent_part_removal_threshold`` (100) wait, it
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

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from chdb import session as chdb_session

from llmtap.errors import StoreError, StoreUnavailable
from llmtap.private_files import private_root
from llmtap.stores.analytics.chdb_repair import (
    ACTIVE_PARTS_SQL,
    BROKEN_PART_CODE,
    SUSPECT_S,
    SessionGate,
    broken_parts_named,
    empty_marks,
    low_on_space,
)
from llmtap.stores.analytics.client import SESSION_SETTINGS, classify

log = logging.getLogger(__name__)

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
TABLE_SETTINGS = {"concurrent_part_removal_threshold": 1_000_000_000, "old_parts_lifetime": 60}
"""Settings of llmtap's tables in chDB (see ``Threads`` above, and chdb_repair.py for why merged-away
parts are kept a minute)."""
REPAIR_EVERY_S = 30.0
"""The same broken part is reopened for at most once per this long: one reopen that did not set
it aside will not be followed by another at every query."""


class ChdbClient:
    def __init__(self, path: Path, release_above_mb: int = 0) -> None:
        self.path = path.absolute()
        self.release_above_mb = release_above_mb
        # chDB creates its files with the process umask; a 0700 directory keeps them to us anyway
        private_root(self.path)
        if "?" in str(self.path):
            # chDB reads what follows a '?' as start-up arguments
            raise StoreUnavailable(f"analytics store: a chDB path may not contain '?': {self.path}")
        self._target = f"{self.path}?" + "&".join(f"{k}={v}" for k, v in ENGINE_ARGS.items())
        self._gate = SessionGate()
        self._generation = 0
        self._next_repair = 0.0
        self._suspect_until = 0.0
        self._repaired_parts: set[str] = set()
        self._session: Any = self._open()

    def _open(self) -> Any:
        try:
            session = chdb_session.Session(self._target)  # type: ignore[no-untyped-call]
        except RuntimeError as err:
            raise StoreUnavailable(
                f"analytics store: cannot open chDB at {self.path} (one process per data "
                f"directory, one directory per process): {err}"
            ) from err
        try:
            session.query(SESSION_SETTINGS, "CSV")  # type: ignore[no-untyped-call]
        except RuntimeError as err:
            session.close()  # type: ignore[no-untyped-call]
            raise classify(str(err), "run DDL") from err
        return session

    def tune_table(self, table: str) -> None:
        """Apply ``TABLE_SETTINGS`` to one of llmtap's tables (after its migrations)."""
        pairs = ", ".join(f"{name} = {value}" for name, value in TABLE_SETTINGS.items())
        self.command(f"ALTER TABLE {table} MODIFY SETTING {pairs}")

    def command(self, sql: str) -> None:
        self._run(sql, "CSV", None, "run DDL")

    def insert_json_each_row(self, table: str, data: bytes) -> None:
        # the rows follow the statement as format data: parsed by the JSON reader in bulk,
        # never as SQL expressions (which is orders of magnitude slower)
        self._insert(f"INSERT INTO {table} FORMAT JSONEachRow\n{data.decode()}")

    def insert_json_compact(self, table: str, columns: Sequence[str], data: bytes) -> None:
        # columns are llmtap's own names (never input): the statement carries them as they are
        names = ", ".join(columns)
        self._insert(f"INSERT INTO {table} ({names}) FORMAT JSONCompactEachRow\n{data.decode()}")

    def _insert(self, sql: str) -> None:
        try:
            self._run(sql, "CSV", None, "insert")
        except StoreError:
            # a full disk, most likely: a merge running meanwhile may commit a broken part
            self._suspect_until = time.monotonic() + SUSPECT_S
            raise
        if (time.monotonic() < self._suspect_until or low_on_space(self.path)) and self._repaired():
            # the broken part may be this very insert's, gone with the repair: written again
            raise StoreUnavailable(
                "analytics store: a part written while the disk was full was broken; the store "
                "was reopened and the batch is to be written again"
            )

    def query_rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        encoded = {name: escaped(value) for name, value in params.items()}
        result = self._run(sql, "JSONEachRow", encoded, "query")
        rows = [_decode_row.decode(line) for line in result.bytes().splitlines() if line]
        del result
        if self.release_above_mb and resident_mb() > self.release_above_mb:
            self._run("SYSTEM JEMALLOC PURGE", "CSV", None, "release memory")
        return rows

    def _run(self, sql: str, fmt: str, params: dict[str, Any] | None, what: str) -> Any:
        generation = self._generation
        if self._session is None and not self._repair(generation, "the last reopen failed", {""}):
            raise StoreUnavailable(f"analytics store: cannot {what}: chDB is being reopened")
        try:
            with self._gate.statement():
                generation = self._generation
                return self._session.query(sql, fmt, params=params)
        except RuntimeError as err:  # chdb.ChdbError is a RuntimeError
            if BROKEN_PART_CODE not in str(err) or not self._repair(
                generation, str(err), broken_parts_named(str(err))
            ):
                raise classify(str(err), what) from err
        try:  # once more, on the reopened session
            with self._gate.statement():
                return self._session.query(sql, fmt, params=params)
        except RuntimeError as err:
            raise classify(str(err), what) from err

    def _repaired(self) -> bool:
        """Look for parts with an empty marks file; True when some were found and set aside."""
        generation = self._generation
        result = self._run(ACTIVE_PARTS_SQL, "JSONEachRow", None, "list parts")
        parts = [_decode_row.decode(line) for line in result.bytes().splitlines() if line]
        broken = empty_marks(parts)
        return bool(broken) and self._repair(
            generation, f"part(s) with an empty marks file: {', '.join(broken)}", set(broken)
        )

    def _repair(self, seen: int, reason: str, parts: set[str]) -> bool:
        """Reopen the session (the engine sets broken parts aside and restores what they had
        merged, chdb_repair.py); False when the same parts were repaired a moment ago (a reopen
        did not help them, another will not either)."""
        with self._gate.repair():
            if self._generation != seen:
                return True  # another thread reopened it meanwhile
            now = time.monotonic()
            if now < self._next_repair and parts <= self._repaired_parts:
                return False
            self._next_repair = now + REPAIR_EVERY_S
            self._repaired_parts = parts
            log.error(
                "analytics store: a broken part after a full disk (%s); reopening the store so "
                "chDB sets it aside and restores the parts it was merged from",
                reason.strip().splitlines()[0][:300],
            )
            if self._session is not None:
                self._session.close()
                self._session = None
            try:
                self._session = self._open()
            finally:
                self._generation += 1
            return True

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
