"""Rate-limit counters in a SQLite file in the data directory: exact across every proxy process
on the machine, with no service to run.

Every check is one ``BEGIN IMMEDIATE`` transaction: the file's write lock makes the proxy
processes take turns, so a budget's last unit goes to exactly one call.

Where it runs. When the lock is free the check runs right on the event loop, on a connection
that never waits (busy timeout 0, no automatic checkpoint): a transaction on a local WAL file is
~60 µs, where handing it to a thread and back cost ~0.6 ms at c=1 (two GIL hand-overs with the
shipper thread at a 0.5 ms switch interval) — the same trade as the key directory's inline
lookups on a local records store. When another process holds the lock, the check goes to this
store's own thread, which waits for the lock (up to the busy timeout) off the loop, takes every
check queued for it and does them in one transaction: under a burst, one lock hand-over per
batch instead of one per call (with one per call, two processes under a 200-call burst spent
longer in SQLite's busy back-off than the check's deadline and failed open). The thread also
checkpoints the WAL the loop's connection leaves alone, so the loop never waits on an fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmtap.proxy.gateway.ratelimit_store import (
    BucketCheck,
    BucketState,
    Decision,
    LimiterUnavailable,
)
from llmtap.sqlite_wal import enable_wal

log = logging.getLogger("llmtap.proxy.ratelimit")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    key TEXT PRIMARY KEY,
    used INTEGER NOT NULL,
    window_end_ms INTEGER NOT NULL
) WITHOUT ROWID
"""
_MAX_BATCH = 512
_CHECKPOINT_EVERY = 500
"""Checks done on the loop between two WAL checkpoints asked of the thread."""
_SWEEP_EVERY = 1000
"""Batches between deletions of buckets whose window ended (per-user buckets come and go)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Job:
    checks: Sequence[BucketCheck] | None
    """None: a charge of ``amount`` to ``key``."""
    key: str
    amount: int
    window_ms: int
    future: asyncio.Future[Decision | None] | None
    loop: asyncio.AbstractEventLoop | None


_STOP = _Job(None, "", 0, 0, None, None)
_CHECKPOINT = _Job(None, "", 0, 0, None, None)


def _settle(future: asyncio.Future[Decision | None], result: Decision | Exception | None) -> None:
    if future.done():
        return  # the call gave up waiting (fail-open) or left
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)


class SqliteLimiterStore:
    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._batches = 0
        self._ready = threading.Event()
        """The thread has opened the file (switched it to WAL, made the table)."""
        self._loop_conn: sqlite3.Connection | None = None
        self._loop_checks = 0
        self.inline = True
        """Try checks on the loop first (tests turn it off to drive the thread)."""

    def start(self) -> None:
        """Open the file now, on the store's thread: two processes switching a new file to WAL
        wait on each other, and the first burst of checks must not pay for that."""
        self._submit(_Job([], "", 0, 0, None, None))

    def acquire_nowait(self, checks: Sequence[BucketCheck]) -> Decision | None:
        if self.inline and self._ready.is_set():
            return self._acquire_inline(checks)
        return None

    async def acquire(self, checks: Sequence[BucketCheck]) -> Decision:
        decision = self.acquire_nowait(checks)
        if decision is not None:
            return decision
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision | None] = loop.create_future()
        self._submit(_Job(checks, "", 0, 0, future, loop))
        decision = await future
        assert decision is not None
        return decision

    async def charge(self, key: str, amount: int, window_ms: int) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision | None] = loop.create_future()
        self._submit(_Job(None, key, amount, window_ms, future, loop))
        await future

    def _acquire_inline(self, checks: Sequence[BucketCheck]) -> Decision | None:
        """The check on the calling (loop) thread if the lock is free at once; None otherwise."""
        try:
            db = self._loop_conn
            if db is None:
                # the thread made the file WAL and made the table: nothing here waits
                db = sqlite3.connect(self._path, timeout=0, isolation_level=None)
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA wal_autocheckpoint=0")
                self._loop_conn = db
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return None  # locked by another process (or not openable): the thread waits for it
        try:
            decision = self._check(db, checks, _now_ms())
            db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            return None
        self._loop_checks += 1
        if self._loop_checks % _CHECKPOINT_EVERY == 0:
            self._jobs.put(_CHECKPOINT)
        return decision

    def _submit(self, job: _Job) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="llmtap-ratelimit", daemon=True
                    )
                    self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            batch = [self._jobs.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            stop = any(job is _STOP for job in batch)
            checkpoint = any(job is _CHECKPOINT for job in batch)
            jobs = [job for job in batch if job is not _STOP and job is not _CHECKPOINT]
            if jobs:
                self._serve(jobs)
            if checkpoint:
                self._checkpoint()
            if stop:
                return

    def _checkpoint(self) -> None:
        try:
            self._db().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            log.warning("rate-limit store: WAL checkpoint failed", exc_info=True)

    def _serve(self, jobs: list[_Job]) -> None:
        results: list[Decision | Exception | None]
        try:
            results = list(self.run_batch(jobs, _now_ms()))
        except LimiterUnavailable as exc:
            results = [exc] * len(jobs)
        for job, result in zip(jobs, results, strict=True):
            if job.loop is not None and job.future is not None:
                # a closed loop (the proxy stopping): nobody waits any more
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(_settle, job.future, result)

    def acquire_now(self, checks: Sequence[BucketCheck], now_ms: int) -> Decision:
        """One check at ``now_ms``, blocking (tests drive the clock through this)."""
        decision = self.run_batch([_Job(checks, "", 0, 0, None, None)], now_ms)[0]
        assert decision is not None
        return decision

    def run_batch(self, jobs: Sequence[_Job], now_ms: int) -> list[Decision | None]:
        """Every job in one transaction, in order; ``LimiterUnavailable`` when SQLite fails."""
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                out = [
                    self._charge(db, job, now_ms)
                    if job.checks is None
                    else self._check(db, job.checks, now_ms)
                    for job in jobs
                ]
                self._batches += 1
                if self._batches % _SWEEP_EVERY == 0:
                    db.execute("DELETE FROM buckets WHERE window_end_ms <= ?", (now_ms,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._reset()
            raise LimiterUnavailable(f"rate-limit store: {exc}") from exc
        return out

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            self._conn = conn
            self._ready.set()
        return self._conn

    @staticmethod
    def _check(db: sqlite3.Connection, checks: Sequence[BucketCheck], now_ms: int) -> Decision:
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
                    "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)", (check.key, used, end)
                )
            states.append(BucketState(used, end - now_ms))
        return Decision(allowed, tuple(states))

    @staticmethod
    def _charge(db: sqlite3.Connection, job: _Job, now_ms: int) -> None:
        row = db.execute("SELECT window_end_ms FROM buckets WHERE key = ?", (job.key,)).fetchone()
        if row is None or row[0] <= now_ms:
            db.execute(
                "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                (job.key, job.amount, now_ms + job.window_ms),
            )
        else:
            db.execute("UPDATE buckets SET used = used + ? WHERE key = ?", (job.amount, job.key))
        return None

    def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                log.warning("closing the rate-limit store failed", exc_info=True)

    async def aclose(self) -> None:
        self._close_loop_conn()  # on the loop: the thread that made it
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def _close_loop_conn(self) -> None:
        conn, self._loop_conn = self._loop_conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        thread = self._thread
        if thread is not None:
            self._jobs.put(_STOP)
            thread.join(5.0)
        self._reset()
        self._close_loop_conn()
