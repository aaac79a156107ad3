"""The embedded cache store: one SQLite file in the data directory, shared by every proxy
process on the machine (WAL: readers never wait for the one writer).

Every statement runs on one thread of the store's own (``ThreadPoolExecutor(1)``), never on the
proxy's loop. A lookup that can be answered from a full bucket reads only; a claim takes the
write lock (``BEGIN IMMEDIATE``) so two processes never claim the same slot. Expired rows are
overwritten in place and swept every ``SWEEP_EVERY`` saves.

The file is bounded by SQLite itself (``max_page_count``, from ``cache_max_mb``): a hit costs
nothing for it. A write that finds the file full (``SQLITE_FULL``) makes room, only then: expired
rows first, then the answers that expire soonest (by an index on ``expires_ms``), in growing
batches; an answer that still does not fit is not stored (``CacheFullError``) and its slot's
claim is freed. The write-ahead log is truncated back to ``WAL_LIMIT_BYTES`` at checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from llmtap.private_files import private_dirs, private_file
from llmtap.proxy.gateway.cache_store import Begin, CacheFullError, CacheStoreError, decide
from llmtap.sqlite_wal import enable_wal

T = TypeVar("T")
SWEEP_EVERY = 256
BUSY_TIMEOUT_MS = 5000
WAL_LIMIT_BYTES = 4 * 1024 * 1024
EVICT_FIRST = 8
"""Answers evicted by the first round that makes room; each further round doubles it."""
EVICT_ROUNDS = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_slots (
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    data BLOB,
    PRIMARY KEY (key, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_slots_expires ON cache_slots (expires_ms);
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteCacheStore:
    def __init__(self, path: Path, max_bytes: int = 1024 * 1024 * 1024) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="llmtap-cache")
        self._conn: sqlite3.Connection | None = None
        self._saves = 0

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn, args)
        except (sqlite3.Error, OSError) as exc:
            raise CacheStoreError(f"cache database: {exc}") from exc

    def _call(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        return fn(self._connection(), *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            private_dirs(self._path.parent)
            private_file(self._path)
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            # per connection, so every process sharing the file sets it; a file already larger
            # keeps its size (SQLite never sets it below the current page count)
            conn.execute(f"PRAGMA max_page_count={max(1, self._max_bytes // page_size)}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self._conn = conn
        return self._conn

    async def begin(
        self, key: str, bucket: int, read: bool, save: bool, claim_ms: int, rnd: int
    ) -> Begin:
        return await self._run(_begin, key, bucket, read, save, claim_ms, rnd)

    async def put(self, key: str, idx: int, data: bytes, ttl_ms: int) -> int:
        self._saves += 1
        sweep = self._saves % SWEEP_EVERY == 0
        return await self._run(_put, key, idx, data, ttl_ms, sweep)

    async def release(self, key: str, idx: int) -> None:
        await self._run(_release, key, idx)

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()

        if self._conn is not None:
            with contextlib.suppress(CacheStoreError):
                await self._run(shut)
            self._conn = None
        self._executor.shutdown(wait=False)


def _slots(
    conn: sqlite3.Connection, key: str, bucket: int, now: int
) -> tuple[list[int], list[int], list[int]]:
    filled: list[int] = []
    busy: list[int] = []
    taken = set()
    for idx, expires, has_data in conn.execute(
        "SELECT idx, expires_ms, data IS NOT NULL FROM cache_slots WHERE key = ? AND idx < ?",
        (key, bucket),
    ):
        if expires <= now:
            continue
        (filled if has_data else busy).append(idx)
        taken.add(idx)
    return sorted(filled), sorted(busy), [i for i in range(bucket) if i not in taken]


def _data(conn: sqlite3.Connection, key: str, idx: int) -> bytes | None:
    row = conn.execute(
        "SELECT data FROM cache_slots WHERE key = ? AND idx = ?", (key, idx)
    ).fetchone()
    return None if row is None else row[0]


def _begin(
    conn: sqlite3.Connection,
    key: str,
    bucket: int,
    read: bool,
    save: bool,
    claim_ms: int,
    rnd: int,
) -> Begin:
    now = _now_ms()
    # the common case reads only: a full bucket serves without the write lock
    action, idx = decide(*_slots(conn, key, bucket, now), read, save, rnd)
    if action == "hit":
        data = _data(conn, key, idx)
        if data is not None:
            return Begin("hit", idx, data)
    if action == "wait" or action == "miss":
        return Begin(action)
    conn.execute("BEGIN IMMEDIATE")
    try:
        now = _now_ms()
        action, idx = decide(*_slots(conn, key, bucket, now), read, save, rnd)
        if action == "hit":
            data = _data(conn, key, idx)
            conn.execute("COMMIT")
            return Begin("hit", idx, data) if data is not None else Begin("wait")
        if action == "fill":
            # only a free (missing or expired) slot is claimed: a refreshed (save-only) slot
            # keeps serving its old answer until the new one lands
            _with_room(
                conn,
                "INSERT INTO cache_slots (key, idx, expires_ms, data) VALUES (?, ?, ?, NULL)"
                " ON CONFLICT (key, idx) DO UPDATE SET expires_ms = excluded.expires_ms,"
                " data = NULL WHERE cache_slots.expires_ms <= ?",
                (key, idx, now + claim_ms, now),
                now,
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return Begin(action, idx)


def _put(
    conn: sqlite3.Connection, key: str, idx: int, data: bytes, ttl_ms: int, sweep: bool
) -> int:
    now = _now_ms()
    try:
        evicted = _with_room(
            conn,
            "INSERT OR REPLACE INTO cache_slots (key, idx, expires_ms, data) VALUES (?, ?, ?, ?)",
            (key, idx, now + ttl_ms, data),
            now,
        )
    except CacheFullError:
        _release(conn, key, idx)  # a delete needs no room: the next call fills the slot
        raise
    if sweep:
        conn.execute("DELETE FROM cache_slots WHERE expires_ms <= ?", (now,))
    return evicted


def _with_room(conn: sqlite3.Connection, sql: str, params: tuple[object, ...], now: int) -> int:
    """Run one write; while the file is full, make room and try again. The answers evicted
    (expired rows are not counted); ``CacheFullError`` when the rounds made too little."""
    evicted = 0
    for round_ in range(EVICT_ROUNDS + 1):
        try:
            conn.execute(sql, params)
            return evicted
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_FULL:
                raise
        if round_ == 0:
            freed = conn.execute("DELETE FROM cache_slots WHERE expires_ms <= ?", (now,)).rowcount
            if freed:
                continue
        # answers only: a claim is a call still at its provider
        count = conn.execute(
            "DELETE FROM cache_slots WHERE (key, idx) IN (SELECT key, idx FROM cache_slots"
            " WHERE data IS NOT NULL AND expires_ms > ? ORDER BY expires_ms LIMIT ?)",
            (now, EVICT_FIRST << round_),
        ).rowcount
        if count <= 0:
            break
        evicted += count
    raise CacheFullError("the cache file is full", evicted)


def _release(conn: sqlite3.Connection, key: str, idx: int) -> None:
    conn.execute("DELETE FROM cache_slots WHERE key = ? AND idx = ? AND data IS NULL", (key, idx))
