"""Retention for the embedded queue: drop what every reader is done with and is old enough.

A message is deleted when (a) every consumer group that reads its topic has committed past it and
(b) it is older than the retention period. A topic no group has ever committed on (typically the
dead-letter topic before anyone replays it) is kept whole: nobody has read it, so nothing is
"done". Deletes run in small chunks, each its own transaction, so publishers wait at most one
chunk for the write lock.
"""

from __future__ import annotations

import sqlite3

from llmtap.queue import _sqlite_db as db

CHUNK = 5000


def prune(conn: sqlite3.Connection, retention_ms: int, now_ms: int | None = None) -> int:
    """Delete consumed messages older than ``retention_ms``; returns how many went."""
    cutoff = (db.now_ms() if now_ms is None else now_ms) - retention_ms
    removed = 0
    with db.translated("pruning"):
        for topic, part, upto in _prunable(conn, cutoff):
            (low,) = conn.execute(
                "SELECT MIN(msg_offset) FROM messages WHERE topic = ? AND part = ?", (topic, part)
            ).fetchone()
            if low is None:
                continue
            while low < upto:
                step = min(low + CHUNK, upto)
                with db.write_txn(conn):
                    cursor = conn.execute(
                        "DELETE FROM messages WHERE topic = ? AND part = ? AND msg_offset < ?",
                        (topic, part, step),
                    )
                removed += cursor.rowcount
                low = step
    return removed


def _prunable(conn: sqlite3.Connection, cutoff_ms: int) -> list[tuple[str, int, int]]:
    """(topic, partition, first offset to keep) for partitions with something to delete."""
    result = []
    readers = dict(
        conn.execute("SELECT topic, COUNT(DISTINCT grp) FROM group_offsets GROUP BY topic")
    )
    for topic, part in conn.execute("SELECT topic, part FROM partitions").fetchall():
        groups = readers.get(topic, 0)
        if not groups:
            continue
        count, slowest = conn.execute(
            "SELECT COUNT(*), MIN(next_offset) FROM group_offsets WHERE topic = ? AND part = ?",
            (topic, part),
        ).fetchone()
        if count < groups:  # some reader has not committed on this partition yet
            continue
        (young,) = conn.execute(
            "SELECT MIN(msg_offset) FROM messages"
            " WHERE topic = ? AND part = ? AND timestamp_ms >= ?",
            (topic, part, cutoff_ms),
        ).fetchone()
        upto = slowest if young is None else min(slowest, young)
        if upto > 0:
            result.append((topic, part, upto))
    return result
