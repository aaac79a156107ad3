"""Rate-limit counters in a SQLite file in the data directory: exact across every proxy process
on the machine, with no service to run.

Each check is one ``BEGIN IMMEDIATE`` transaction (the file's write lock: the processes take turns,
so a budget's last unit goes to exactly one call). The work runs on one thread of this store's
own, never on the event loop; the loop awaits its future. At ~20 µs a transaction the thread is
never the bottleneck of a proxy process.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llmtap.proxy.gateway.ratelimit_store import (
    BucketCheck,
    BucketState,
    Decision,
    LimiterUnavailable,
)
from llmtap.sqlite_wal import enable_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    key TEXT PRIMARY KEY,
    used INTEGER NOT NULL,
    window_end_ms INTEGER NOT NULL
) WITHOUT ROWID
"""
_SWEEP_EVERY = 1000
"""Checks between deletions of buckets whose window ended (per-user buckets come and go)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteLimiterStore:
    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._checks = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="llmtap-ratelimit")
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None)
            enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    async def acquire(self, checks: Sequence[BucketCheck]) -> Decision:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.acquire_now, checks, _now_ms())

    async def charge(self, key: str, amount: int, window_ms: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self.charge_now, key, amount, window_ms, _now_ms())

    def acquire_now(self, checks: Sequence[BucketCheck], now_ms: int) -> Decision:
        """The check at ``now_ms`` (blocking; on this store's thread, or in a test)."""
        try:
            return self._acquire(checks, now_ms)
        except sqlite3.Error as exc:
            self._reset()
            raise LimiterUnavailable(f"rate-limit store: {exc}") from exc

    def charge_now(self, key: str, amount: int, window_ms: int, now_ms: int) -> None:
        try:
            db = self._db()
            with self._lock:
                db.execute("BEGIN IMMEDIATE")
                try:
                    row = db.execute(
                        "SELECT window_end_ms FROM buckets WHERE key = ?", (key,)
                    ).fetchone()
                    if row is None or row[0] <= now_ms:
                        db.execute(
                            "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                            (key, amount, now_ms + window_ms),
                        )
                    else:
                        db.execute(
                            "UPDATE buckets SET used = used + ? WHERE key = ?", (amount, key)
                        )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            self._reset()
            raise LimiterUnavailable(f"rate-limit store: {exc}") from exc

    def _acquire(self, checks: Sequence[BucketCheck], now_ms: int) -> Decision:
        db = self._db()
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                current: list[tuple[int, int]] = []
                for check in checks:
                    row = db.execute(
                        "SELECT used, window_end_ms FROM buckets WHERE key = ?", (check.key,)
                    ).fetchone()
                    if row is None or row[1] <= now_ms:
                        current.append((0, now_ms + check.window_ms))
                    else:
                        current.append((row[0], row[1]))
                allowed = all(
                    used + check.need <= check.limit
                    for check, (used, _) in zip(checks, current, strict=True)
                )
                states = []
                for check, (used, end) in zip(checks, current, strict=True):
                    if allowed and check.take:
                        used += check.take
                        db.execute(
                            "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                            (check.key, used, end),
                        )
                    states.append(BucketState(used, end - now_ms))
                self._checks += 1
                if self._checks % _SWEEP_EVERY == 0:
                    db.execute("DELETE FROM buckets WHERE window_end_ms <= ?", (now_ms,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Decision(allowed, tuple(states))

    def _reset(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._reset()
