"""The embedded queue's file: schema, connection settings, transactions and group leases.

Why these settings (see docs/decisions/2026-11-25-embedded-queue.md):

* ``journal_mode=WAL``: the consumer reads while proxies write, and readers never block writers.
* ``synchronous=FULL``: in WAL mode ``NORMAL`` survives a process crash but may lose the last
  commits on power loss; ``publish`` returning must mean "on disk", so every commit syncs the WAL.
  The proxy's shipper batches records, so this is one fsync per batch, not per record; its
  producer may switch its own connection to ``NORMAL`` with group commit (``SqliteProducer``,
  docs/decisions/2026-12-01-queue-group-commit.md).
* ``busy_timeout``: writers from several processes queue on the file lock instead of failing.
* Every write is ``BEGIN IMMEDIATE``: the write lock is taken up front, so two publishers never
  both read the same ``next_offset`` (offsets stay unique and gap-free per partition).
"""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from llmtap.errors import QueueError
from llmtap.private_files import private_file
from llmtap.sqlite_wal import enable_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    msg_offset INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    headers BLOB,
    PRIMARY KEY (topic, part, msg_offset)
);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (topic, part, timestamp_ms);
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_leases (
    grp TEXT PRIMARY KEY,
    member TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn SQLite's errors into ``QueueError`` (retriable: a locked or full disk may recover)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise QueueError(f"embedded queue: {action} failed: {exc}") from exc


OPEN_BUSY_TIMEOUT_MS = 30_000


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    try:
        private_file(path)  # before SQLite creates it: its -wal and -shm take the file's mode
    except OSError as err:
        raise QueueError(f"embedded queue: creating {path} failed: {err}") from err
    with translated(f"opening {path}"):
        # isolation_level=None: transactions are spelled out below, never opened implicitly.
        # Opening may wait on another process that is creating the same database (serve's
        # proxies and backend start together): give that longer than a call's busy timeout,
        # which a loaded machine can exceed, then use the call's own.
        open_timeout_ms = max(busy_timeout_ms, OPEN_BUSY_TIMEOUT_MS)
        conn = sqlite3.connect(
            path, timeout=open_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={int(open_timeout_ms)}")
            enable_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            with write_txn(conn):
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        except BaseException:
            conn.close()
            raise
    return conn


@contextmanager
def write_txn(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def ensure_topic(conn: sqlite3.Connection, topic: str, partitions: int) -> int:
    """Create ``topic`` with ``partitions`` if it is new; returns its partition count.

    The first creator wins: changing the count later would move keys to other partitions and
    break per-key order, so an existing topic keeps its count. Call inside a write transaction.
    """
    conn.execute(
        "INSERT OR IGNORE INTO topics (topic, partitions) VALUES (?, ?)", (topic, partitions)
    )
    (count,) = conn.execute("SELECT partitions FROM topics WHERE topic = ?", (topic,)).fetchone()
    conn.executemany(
        "INSERT OR IGNORE INTO partitions (topic, part, next_offset) VALUES (?, ?, 0)",
        [(topic, p) for p in range(count)],
    )
    return int(count)


# -- publishing: few statements, each one step ---------------------------------------------------
# Every statement step gives the GIL up and must win it back; on two busy cores that costs up to a
# switch interval while the proxy's loop thread runs, and row by row the shipper fell behind an
# unpinned proxy's loop (docs/decisions/2026-12-02-shipper-gil-steps.md).

INSERT_SIZES = (256, 64, 16, 4, 1)
"""Rows per INSERT statement: a batch goes in as the fewest statements of these sizes (70 rows:
64 + 4 + 1 + 1). A few fixed sizes, not one per batch length, so SQLite's statement cache holds
five prepared INSERTs rather than up to 256 (each one's program grows with its rows)."""
MESSAGE_COLUMNS = 7


@functools.lru_cache(maxsize=len(INSERT_SIZES))
def _insert_sql(rows: int) -> str:
    return (
        "INSERT INTO messages (topic, part, msg_offset, timestamp_ms, key, value, headers) VALUES "
        + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    )


def partition_offsets(conn: sqlite3.Connection, topic: str) -> dict[int, int]:
    """Each partition of ``topic`` and the offset its next message gets."""
    rows = conn.execute(
        "SELECT part, next_offset FROM partitions WHERE topic = ?", (topic,)
    ).fetchall()
    return {part: offset for part, offset in rows}


def append_messages(conn: sqlite3.Connection, flat: Sequence[object]) -> None:
    """Insert messages given as one flat sequence of ``MESSAGE_COLUMNS`` values per row (topic,
    part, offset, timestamp, key, value, headers), in order, in the fewest statements."""
    count = len(flat) // MESSAGE_COLUMNS
    start = 0
    for size in INSERT_SIZES:
        while count - start >= size:
            chunk = flat[start * MESSAGE_COLUMNS : (start + size) * MESSAGE_COLUMNS]
            conn.execute(_insert_sql(size), chunk)
            start += size


def advance_offsets(conn: sqlite3.Connection, topic: str, next_offsets: dict[int, int]) -> None:
    """Set the next offset of each partition named, in one statement."""
    if not next_offsets:
        return
    conn.execute(
        "UPDATE partitions SET next_offset = CASE part"
        + " WHEN ? THEN ?" * len(next_offsets)
        + " END WHERE topic = ? AND part IN ("
        + ",".join("?" * len(next_offsets))
        + ")",
        [*(x for item in next_offsets.items() for x in item), topic, *next_offsets],
    )


def _alive_here(host: str, pid: int) -> bool:
    """False only when the holder certainly died: same host and no such process."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lease(conn: sqlite3.Connection, group: str, member: str, lease_ms: int) -> None:
    """Make ``member`` the group's one active consumer, or raise ``QueueError``.

    A lease is free when it has expired or its holder's process is gone (a crashed consumer on
    this machine is replaced at once, not after the lease runs out). Call inside a write txn.
    """
    row = conn.execute(
        "SELECT member, host, pid, expires_ms FROM group_leases WHERE grp = ?", (group,)
    ).fetchone()
    now = now_ms()
    if row is not None:
        holder, host, pid, expires = row
        if holder != member and expires > now and _alive_here(host, pid):
            raise QueueError(
                f"embedded queue: consumer group {group!r} already has an active member "
                f"(pid {pid} on {host}); the embedded queue allows one consumer per group",
                retriable=False,
            )
    conn.execute(
        "INSERT OR REPLACE INTO group_leases (grp, member, host, pid, expires_ms) "
        "VALUES (?, ?, ?, ?, ?)",
        (group, member, socket.gethostname(), os.getpid(), now + lease_ms),
    )


def release_lease(conn: sqlite3.Connection, group: str, member: str) -> None:
    conn.execute("DELETE FROM group_leases WHERE grp = ? AND member = ?", (group, member))
