"""Embedded queue: a durable, partitioned log in one SQLite file (``sqlite:///<path>``).

Kafka's model on one machine: topics split into partitions (``crc32(key) % partitions``, the
same rule as librdkafka's default partitioner), per-partition offsets that only grow, and
consumer-group committed offsets meaning "next offset to read". Any number of processes may
publish; each consumer group has **one active member** at a time, held by a lease in the file
(a second member is refused with ``QueueError``; a crashed member's lease is taken over). See
docs/decisions/2026-11-25-embedded-queue.md.

Both classes are safe to share between threads (one lock around one connection each).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from llmtap.errors import QueueError
from llmtap.queue import _sqlite_db as db
from llmtap.queue.port import Failed, Message, OnRevoke
from llmtap.queue.sqlite_retention import prune

log = logging.getLogger(__name__)

_headers_codec = msgspec.msgpack.Encoder()
_headers_decoder = msgspec.msgpack.Decoder(dict[str, bytes])

Item = tuple[bytes | None, bytes, Mapping[str, bytes] | None]


class SqliteProducer:
    """Publishes into the file; ``publish`` returns once the message is synced to disk.

    With ``group_commit_s`` > 0 (the proxy's shipper: ``Settings.queue_group_commit_ms``) a
    publish returns once committed to the file's write-ahead log, which survives a crash of
    this process; the log is fsynced at most once per ``group_commit_s``, on ``flush`` and on
    ``close``, and each fsync makes every commit before it durable against power loss too.
    See docs/decisions/2026-12-01-queue-group-commit.md.
    """

    def __init__(
        self,
        path: Path,
        partitions: int,
        busy_timeout_ms: int = 5000,
        *,
        group_commit_s: float = 0.0,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self._partitions = partitions
        self._conn = db.connect(path, busy_timeout_ms)
        self._lock = threading.Lock()
        self._topic_partitions: dict[str, int] = {}
        self._round_robin = 0
        self._group_commit_s = group_commit_s
        self._wal = Path(f"{path}-wal")
        self._wal_fd: int | None = None
        self._unsynced = False
        self._next_sync = 0.0
        if group_commit_s > 0:
            try:
                with db.translated(f"opening {path}"):
                    self._conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                self._conn.close()
                raise

    def publish(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        self._write(topic, [(key, value, headers)])

    def publish_batch(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        self._write(topic, [(key, value, None) for key, value in items])

    def flush(self, timeout_s: float) -> int:
        with self._lock:
            self._sync()
        return 0  # every publish is durable once synced, and the sync raises if it fails

    def take_failed(self) -> list[Failed]:
        return []  # delivery is synchronous: a failure raises from publish instead

    def close(self) -> None:
        with self._lock:
            try:
                self._sync()
            except QueueError as exc:
                # the commits are in the file all the same (only a power cut could lose them);
                # shutdown goes on
                log.error("%s at close", exc)
            finally:
                if self._wal_fd is not None:
                    os.close(self._wal_fd)
                    self._wal_fd = None
                self._conn.close()

    def _sync(self) -> None:
        """fsync the write-ahead log if a commit since the last sync has not been; call locked."""
        if not self._unsynced:
            return
        try:
            if self._wal_fd is None:
                # the connection stays open, so SQLite keeps this file (it deletes the log only
                # when its last connection closes): one descriptor serves every sync
                self._wal_fd = os.open(self._wal, os.O_RDONLY | os.O_CLOEXEC)
            os.fsync(self._wal_fd)
        except OSError as exc:
            raise QueueError(f"embedded queue: syncing {self._wal} failed: {exc}") from exc
        self._unsynced = False
        self._next_sync = time.monotonic() + self._group_commit_s

    def _partition_for(self, key: bytes | None, count: int) -> int:
        if key is None:
            self._round_robin += 1
            return self._round_robin % count
        return zlib.crc32(key) % count

    def _write(self, topic: str, items: Sequence[Item]) -> None:
        if not items:
            return
        with self._lock:
            count = self._write_txn(topic, items)
            # remembered only once committed: a topic created in a transaction that rolled back
            # (a full disk fails the COMMIT) does not exist, and must be created again next time
            self._topic_partitions[topic] = count
            if self._group_commit_s > 0:
                self._unsynced = True
                if time.monotonic() >= self._next_sync:
                    try:
                        self._sync()
                    except QueueError as exc:
                        # The records are committed (a crash of this process keeps them):
                        # raising would spool them a second time. The next publish, flush or
                        # close syncs again, and ``flush`` does raise.
                        log.warning("%s; retrying with the next publish", exc)
                        self._next_sync = time.monotonic() + self._group_commit_s

    def _write_txn(self, topic: str, items: Sequence[Item]) -> int:
        """Append ``items`` to ``topic`` in one transaction; the topic's partition count."""
        with db.translated(f"publish to {topic!r}"), db.write_txn(self._conn):
            count = self._topic_partitions.get(topic)
            if count is None:
                count = db.ensure_topic(self._conn, topic, self._partitions)
                if count != self._partitions:
                    log.warning(
                        "topic %r keeps its %d partitions (asked for %d)",
                        topic,
                        count,
                        self._partitions,
                    )
            # few statements, each one step (db.append_messages): every step gives the GIL up
            offsets = db.partition_offsets(self._conn, topic)
            next_offsets: dict[int, int] = {}
            rows: list[object] = []
            timestamp = db.now_ms()
            for key, value, headers in items:
                part = self._partition_for(key, count)
                offset = next_offsets.get(part, offsets[part])
                next_offsets[part] = offset + 1
                encoded = _headers_codec.encode(dict(headers)) if headers else None
                rows += (topic, part, offset, timestamp, key, value, encoded)
            db.append_messages(self._conn, rows)
            db.advance_offsets(self._conn, topic, next_offsets)
        return count


class SqliteConsumer:
    """The single active member of ``group``, reading ``topics`` from its committed offsets.

    ``poll_batch`` checks for new commits every ``poll_interval_s`` (SQLite's ``data_version``,
    which costs no table read) until ``timeout_s`` has passed. The lease is renewed by polls and
    commits; a member that has lost it (it stalled past ``lease_s`` and another took over) gets
    ``QueueError`` from ``commit`` rather than overwriting the new member's offsets. With
    ``retention_ms`` set, commits prune old consumed messages every ``prune_interval_s``.
    """

    def __init__(
        self,
        path: Path,
        group: str,
        topics: Sequence[str],
        partitions: int,
        *,
        busy_timeout_ms: int = 5000,
        lease_s: float = 30.0,
        poll_interval_s: float = 0.02,
        retention_ms: int | None = None,
        prune_interval_s: float = 60.0,
    ) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self._group = group
        self._topics = list(dict.fromkeys(topics))
        self._member = uuid.uuid4().hex
        self._lease_ms = int(lease_s * 1000)
        self._poll_interval_s = poll_interval_s
        self._retention_ms = retention_ms
        self._prune_interval_s = prune_interval_s
        self._lock = threading.Lock()
        self._closed = False
        self._conn = db.connect(path, busy_timeout_ms)
        try:
            with db.translated(f"joining group {group!r}"), db.write_txn(self._conn):
                db.acquire_lease(self._conn, group, self._member, self._lease_ms)
                counts = {t: db.ensure_topic(self._conn, t, partitions) for t in self._topics}
                committed = dict(self._committed_offsets())
        except BaseException:
            self._conn.close()
            raise
        self._positions: dict[tuple[str, int], int] = {
            (t, p): committed.get((t, p), 0) for t, n in counts.items() for p in range(n)
        }
        self._order = list(self._positions)
        self._start = 0
        self._lease_renewed = time.monotonic()
        self._last_prune = time.monotonic()

    # -- Consumer --------------------------------------------------------------------------

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._check_open()
            self._renew_lease_if_due()
            while True:
                version = self._current_data_version()
                batch = self._fetch(max_records)
                if batch:
                    return batch
                if not self._wait_for_change(version, deadline):
                    return []

    def commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        offsets: dict[tuple[str, int], int] = {}
        for m in messages:
            offsets[(m.topic, m.partition)] = max(
                offsets.get((m.topic, m.partition), 0), m.offset + 1
            )
        with self._lock:
            self._check_open()
            with db.translated("commit"), db.write_txn(self._conn):
                self._hold_lease()
                self._conn.executemany(
                    "INSERT OR REPLACE INTO group_offsets (grp, topic, part, next_offset)"
                    " VALUES (?, ?, ?, ?)",
                    [(self._group, t, p, o) for (t, p), o in offsets.items()],
                )
            self._lease_renewed = time.monotonic()
            self._prune_if_due()

    def seek(self, partition: int, offset: int, topic: str | None = None) -> None:
        if topic is None:
            if len(self._topics) != 1:
                raise ValueError("seek needs a topic when the consumer reads several")
            topic = self._topics[0]
        if (topic, partition) not in self._positions:
            raise ValueError(f"{topic!r} has no partition {partition} in this consumer")
        with self._lock:
            self._positions[(topic, partition)] = max(offset, 0)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with db.translated("leaving group"), db.write_txn(self._conn):
                    db.release_lease(self._conn, self._group, self._member)
            finally:
                self._conn.close()

    # -- GroupConsumer ---------------------------------------------------------------------

    def seek_to_time(self, timestamp_ms: int) -> None:
        with self._lock, db.translated("seek by time"):
            self._check_open()
            for topic, part in self._positions:
                row = self._conn.execute(
                    "SELECT MIN(msg_offset) FROM messages"
                    " WHERE topic = ? AND part = ? AND timestamp_ms >= ?",
                    (topic, part, timestamp_ms),
                ).fetchone()
                if row[0] is None:  # nothing that recent: start after the end
                    (row,) = self._conn.execute(
                        "SELECT next_offset FROM partitions WHERE topic = ? AND part = ?",
                        (topic, part),
                    ).fetchall()
                self._positions[(topic, part)] = int(row[0])

    def lag(self) -> dict[tuple[str, int], int]:
        with self._lock, db.translated("lag"):
            self._check_open()
            committed = dict(self._committed_offsets())
            result: dict[tuple[str, int], int] = {}
            for topic, part in self._positions:
                end, first = self._conn.execute(
                    "SELECT p.next_offset, (SELECT MIN(msg_offset) FROM messages m"
                    "  WHERE m.topic = p.topic AND m.part = p.part)"
                    " FROM partitions p WHERE p.topic = ? AND p.part = ?",
                    (topic, part),
                ).fetchone()
                start = committed.get((topic, part), end if first is None else first)
                result[(topic, part)] = max(end - start, 0)
            return result

    def set_on_revoke(self, callback: OnRevoke | None) -> None:
        """Accepted for the port's sake: one member per group means nothing is ever revoked."""

    def prune(self, retention_ms: int) -> int:
        """Delete messages every group has committed past and older than ``retention_ms``."""
        with self._lock:
            self._check_open()
            return prune(self._conn, retention_ms)

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise QueueError("embedded queue: consumer is closed", retriable=False)

    def _committed_offsets(self) -> list[tuple[tuple[str, int], int]]:
        marks = ",".join("?" * len(self._topics))
        rows = self._conn.execute(
            f"SELECT topic, part, next_offset FROM group_offsets WHERE grp = ? AND topic IN ({marks})",
            (self._group, *self._topics),
        ).fetchall()
        return [((t, p), o) for t, p, o in rows]

    def _hold_lease(self) -> None:
        row = self._conn.execute(
            "SELECT member FROM group_leases WHERE grp = ?", (self._group,)
        ).fetchone()
        # Raises if another member holds a live lease: this one stalled and was replaced.
        db.acquire_lease(self._conn, self._group, self._member, self._lease_ms)
        if row is None or row[0] != self._member:
            log.warning("consumer group %r: the lease had lapsed and was taken back", self._group)

    def _renew_lease_if_due(self) -> None:
        if time.monotonic() - self._lease_renewed < self._lease_ms / 3000:
            return
        with db.translated("renewing the group lease"), db.write_txn(self._conn):
            self._hold_lease()
        self._lease_renewed = time.monotonic()

    def _prune_if_due(self) -> None:
        if self._retention_ms is None:
            return
        if time.monotonic() - self._last_prune < self._prune_interval_s:
            return
        self._last_prune = time.monotonic()
        try:
            removed = prune(self._conn, self._retention_ms)
        except QueueError as exc:
            # Housekeeping: the commit itself succeeded, and the next prune catches up.
            log.warning("embedded queue: pruning failed: %s", exc)
            return
        if removed:
            log.info("embedded queue: pruned %d consumed messages", removed)

    def _current_data_version(self) -> int:
        with db.translated("poll"):
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    def _wait_for_change(self, seen: int, deadline: float) -> bool:
        """Sleep in small steps until another connection commits; False at the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(self._poll_interval_s, remaining))
            self._renew_lease_if_due()
            if self._current_data_version() != seen:
                return True

    def _fetch(self, max_records: int) -> list[Message]:
        batch: list[Message] = []
        # Start at a different partition each time so a deep backlog in one cannot starve others.
        order = self._order[self._start :] + self._order[: self._start]
        self._start = (self._start + 1) % len(self._order)
        with db.translated("poll"):
            for topic, part in order:
                want = max_records - len(batch)
                if want <= 0:
                    break
                rows = self._conn.execute(
                    "SELECT msg_offset, timestamp_ms, key, value, headers FROM messages"
                    " WHERE topic = ? AND part = ? AND msg_offset >= ?"
                    " ORDER BY msg_offset LIMIT ?",
                    (topic, part, self._positions[(topic, part)], want),
                ).fetchall()
                for offset, ts, key, value, headers in rows:
                    batch.append(
                        Message(
                            topic=topic,
                            partition=part,
                            offset=offset,
                            key=key,
                            value=value,
                            timestamp_ms=ts,
                            headers=_headers_decoder.decode(headers) if headers else {},
                        )
                    )
                if rows:
                    self._positions[(topic, part)] = rows[-1][0] + 1
        return batch
