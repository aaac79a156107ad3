"""Kafka consumer-group member (confluent-kafka) with at-least-once commits.

Nothing is committed behind the caller's back (``enable.auto.commit=false``,
``enable.auto.offset.store=false``): ``commit`` synchronously stores ``last offset + 1`` per
partition after the sinks succeeded. When a rebalance takes partitions away, the ``on_revoke``
hook runs first (inside ``poll_batch``) so the caller can commit what it finished. A group that
has never committed starts from the earliest message, as the embedded queue does.

A commit is bounded (``commit_timeout_s``): librdkafka's synchronous commit has no timeout, and
after a broker restart a commit issued as the broker went away was seen never to return, the
client delivering nothing and reporting no error for minutes. The commit runs on a daemon thread;
past the bound it counts as failed (retriable) and the caller polls on; while it still waits, a
new commit is refused rather than queued behind it, and once it has waited
``RENEW_AFTER_TIMEOUTS`` bounds the client is replaced by a new member of the same group, which
starts from the committed offsets (what was not committed is delivered again; the sinks dedupe).
A poll is bounded the same way: ``consume`` runs on a thread of its own (``kafka_poller``) and
one not back ``RENEW_AFTER_TIMEOUTS`` bounds past its own timeout also gets the client replaced
(seen once: a ``consume`` not back for minutes behind the wedged commit).
A commit from the ``on_revoke`` hook runs inline: it is inside ``consume`` already, and one from
another thread would wait for the hook to return. While a bounded commit is still out, the hook's
commit is refused at once instead: queued behind a wedged one it would hold ``consume`` for good.

Seeks name partitions this member may not own yet (right after start, before the group assigned
anything): they are kept and applied when the partition is assigned. Not thread-safe: one thread
polls and commits, as in the consumer runner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import Consumer as _Client
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from llmtap.errors import QueueError
from llmtap.queue.kafka_admin import (
    LIBRDKAFKA_LOG,
    TIMEOUT_S,
    queue_error,
    translated,
    with_logger,
)
from llmtap.queue.kafka_poller import Poller
from llmtap.queue.port import Message, OnRevoke

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "client.id": "llmtap-consumer",
    # At most this much of one partition per fetch, so a backlog comes back with every partition
    # advancing together instead of one partition's run after another: a pack of bodies holds
    # records of every partition, and the body store's window cache then serves it once rather
    # than once per partition (docs/decisions/2026-12-02-s3-body-reads.md). A queue URL option
    # (``?max_partition_fetch_bytes=``) overrides it; a larger producer batch still comes whole.
    "max.partition.fetch.bytes": 128 * 1024,
}

Partition = tuple[str, int]
RENEW_AFTER_TIMEOUTS = 3
"""A commit still not back after this many ``commit_timeout_s`` means a wedged client: replaced."""
CLOSE_AFTER_POLL_S = 10.0
"""How long a replaced client's close waits for a consume still running in it."""
LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]


class KafkaConsumer:
    def __init__(
        self,
        config: Mapping[str, Any],
        group: str,
        topics: Sequence[str],
        on_revoke: OnRevoke | None = None,
        *,
        commit_timeout_s: float = 10.0,
    ) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self._topics = list(dict.fromkeys(topics))
        self._on_revoke = on_revoke
        self._assignment: set[Partition] = set()
        self._pending_seeks: dict[Partition, int] = {}
        self._pending_time: int | None = None
        self._closed = False
        self._commit_timeout_s = commit_timeout_s
        self._commit_pending: _Commit | None = None
        self._revoking = False
        self.renewals = 0
        """Clients replaced after a commit stuck for ``RENEW_AFTER_TIMEOUTS`` bounds."""
        self._base_config = dict(config)
        self._client_config = {
            **DEFAULTS,
            **config,
            "group.id": group,
            "error_cb": self._on_error,
            "logger": LIBRDKAFKA_LOG,
        }
        self._admin: AdminClient | None = None
        self._client = self._open()
        self._poller = Poller(self._client)

    def _open(self) -> _Client:
        client = _Client(self._client_config)
        with translated("subscribing"):
            client.subscribe(
                self._topics,
                on_assign=self._assigned,
                on_revoke=self._revoked,
                on_lost=self._lost,
            )
        return client

    @property
    def _wedged_after_s(self) -> float:
        return RENEW_AFTER_TIMEOUTS * self._commit_timeout_s

    # -- Consumer --------------------------------------------------------------------------

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Message]:
        self._check_open()
        # a wedged client delivers nothing, so no new commit would ever notice it: polls do
        if self._commit_pending is not None:
            self._renew_if_wedged()
        with translated("polling"):
            raw = self._poller.consume(max_records, timeout_s, timeout_s + self._wedged_after_s)
        if raw is None:
            # not back long past its own timeout: wedged inside librdkafka (kafka_poller.py)
            self._renew(timeout_s + self._wedged_after_s, "a poll")
            return []
        batch: list[Message] = []
        for m in raw:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise QueueError(f"kafka: consumer failed: {err.str()}", retriable=False)
                log.warning("kafka consumer: %s", err.str())
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            assert topic is not None and partition is not None and offset is not None
            kind, timestamp = m.timestamp()
            batch.append(
                Message(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=m.key(),
                    value=m.value() or b"",
                    timestamp_ms=0 if kind == TIMESTAMP_NOT_AVAILABLE else timestamp,
                    headers=_headers(m.headers()),
                )
            )
        return batch

    def commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        self._check_open()
        offsets: dict[Partition, int] = {}
        for m in messages:
            offsets[(m.topic, m.partition)] = max(
                offsets.get((m.topic, m.partition), 0), m.offset + 1
            )
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        result: list[TopicPartition] | None
        if self._revoking:
            # inside the revoke callback (so inside consume): the group is being served, and a
            # commit from another thread would wait for this callback to return. But not behind
            # a commit that is still out: librdkafka's synchronous commit has no timeout, so
            # this one would wait with it, and with it ``consume`` -- the only place that
            # notices the wedge and replaces the client (seen after a broker restart: the
            # consumer polled nothing for minutes). The next owner redoes the batch instead.
            earlier = self._commit_pending
            if earlier is not None and not earlier.done.is_set():
                raise QueueError(
                    "kafka: an earlier commit is still waiting for the group coordinator;"
                    " not committing the revoked partitions behind it"
                )
            with translated("commit"):
                result = self._client.commit(offsets=partitions, asynchronous=False)
        else:
            result = self._bounded_commit(partitions)
        refused = [tp for tp in result or () if tp.error is not None]
        if refused:
            raise QueueError(
                "kafka: commit refused for "
                + ", ".join(f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in refused)
            )

    def _bounded_commit(self, partitions: list[TopicPartition]) -> list[TopicPartition] | None:
        earlier = self._commit_pending
        if earlier is not None and not earlier.done.is_set():
            if self._renew_if_wedged():
                raise QueueError("kafka: consumer replaced after a commit that never came back")
            raise QueueError("kafka: an earlier commit is still waiting for the group coordinator")
        commit = _Commit(self._client, partitions)
        self._commit_pending = commit
        if not commit.done.wait(self._commit_timeout_s):
            log.warning(
                "kafka consumer: commit not confirmed within %.0fs; polling on (the group may be"
                " rebalancing)",
                self._commit_timeout_s,
            )
            raise QueueError(f"kafka: commit not confirmed within {self._commit_timeout_s:.0f}s")
        if commit.error is not None:
            raise queue_error("commit", commit.error)
        return commit.result

    def _renew_if_wedged(self) -> bool:
        pending = self._commit_pending
        if pending is None or pending.done.is_set():
            return False
        stuck_s = time.monotonic() - pending.started
        if stuck_s < self._wedged_after_s:
            return False
        self._renew(stuck_s, "a commit")
        return True

    def _renew(self, stuck_s: float, what: str) -> None:
        """A new client in the same group, in place of one whose commit or poll never came back
        (seen after a broker restart: nothing delivered, no error reported, for minutes). It
        starts from the group's committed offsets: what was not committed is delivered again."""
        old, old_poller = self._client, self._poller
        old_poller.abandon()
        self._client = self._open()
        self._poller = Poller(self._client)
        self._assignment.clear()
        self._commit_pending = None
        self.renewals += 1
        log.error(
            "kafka consumer: %s stuck for %.0fs; replaced the client (uncommitted records are"
            " delivered again)",
            what,
            stuck_s,
        )
        # closing may hang as the commit did: not on this thread
        threading.Thread(target=_close_quietly, args=(old, old_poller), daemon=True).start()

    def seek(self, partition: int, offset: int, topic: str | None = None) -> None:
        self._check_open()
        if topic is None:
            if len(self._topics) != 1:
                raise ValueError("seek needs a topic when the consumer reads several")
            topic = self._topics[0]
        if (topic, partition) in self._assignment:
            with translated("seek"):
                self._client.seek(TopicPartition(topic, partition, max(offset, 0)))
        else:
            self._pending_seeks[(topic, partition)] = max(offset, 0)

    def close(self) -> None:
        if self._closed:
            return
        self._admin = None
        try:
            # Leaving the group revokes this member's partitions: the hook may still commit.
            with translated("leaving the group"):
                self._client.close()
        finally:
            self._closed = True
            self._poller.abandon()

    # -- GroupConsumer ---------------------------------------------------------------------

    def seek_to_time(self, timestamp_ms: int) -> None:
        """Applies to the partitions this member owns now, or to its first assignment."""
        self._check_open()
        if not self._assignment:
            self._pending_time = timestamp_ms
            return
        for tp in self._offsets_for_time(sorted(self._assignment), timestamp_ms):
            with translated("seek by time"):
                self._client.seek(tp)

    def lag(self) -> dict[tuple[str, int], int]:
        """Per partition this member owns (the others report theirs, so nothing is counted
        twice across the group). Log-end offsets are asked through a separate admin client:
        on the consumer's own connection the request would queue behind its long-polling
        fetch, and its cached watermarks go stale while the caller is not polling."""
        self._check_open()
        owned = [TopicPartition(t, p) for t, p in sorted(self._assignment)]
        if not owned:
            return {}
        with translated("reading lag"):
            committed = {
                (tp.topic, tp.partition): tp.offset
                for tp in self._client.committed(owned, timeout=TIMEOUT_S)
            }
            end = self._list_offsets(owned, LATEST)
            start = dict(committed)
            never = [TopicPartition(t, p) for (t, p), o in committed.items() if o < 0]
            if never:  # no commit yet: the group would start at the earliest offset
                start.update(self._list_offsets(never, EARLIEST))
        return {key: max(end[key] - start[key], 0) for key in end}

    def set_on_revoke(self, callback: OnRevoke | None) -> None:
        self._on_revoke = callback

    # -- rebalance callbacks (run inside consume) -------------------------------------------

    def _assigned(self, client: _Client, partitions: list[TopicPartition]) -> None:
        if self._pending_time is not None:
            timed = self._offsets_for_time(
                [(tp.topic, tp.partition) for tp in partitions], self._pending_time
            )
            partitions = timed
            self._pending_time = None
        for tp in partitions:
            offset = self._pending_seeks.pop((tp.topic, tp.partition), None)
            if offset is not None:
                tp.offset = offset
        client.assign(partitions)
        self._assignment.update((tp.topic, tp.partition) for tp in partitions)

    def _revoked(self, client: _Client, partitions: list[TopicPartition]) -> None:
        lost = [(tp.topic, tp.partition) for tp in partitions]
        if self._on_revoke is not None and lost:
            self._revoking = True
            try:
                self._on_revoke(lost)
            finally:
                self._revoking = False
        self._assignment.difference_update(lost)

    def _lost(self, client: _Client, partitions: list[TopicPartition]) -> None:
        # Already owned by someone else: committing now would fail, so the hook is not called.
        log.warning("kafka consumer lost %d partition(s) without a clean revoke", len(partitions))
        self._assignment.difference_update((tp.topic, tp.partition) for tp in partitions)

    # -- internals -------------------------------------------------------------------------

    def _offsets_for_time(
        self, partitions: Sequence[Partition], timestamp_ms: int
    ) -> list[TopicPartition]:
        with translated("finding offsets by time"):
            found = self._client.offsets_for_times(
                [TopicPartition(t, p, timestamp_ms) for t, p in partitions], timeout=TIMEOUT_S
            )
        # -1: nothing at or after that time in this partition, so start at its end
        return [
            TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
            for tp in found
        ]

    def _list_offsets(
        self, partitions: Sequence[TopicPartition], spec: OffsetSpec
    ) -> dict[Partition, int]:
        if self._admin is None:
            self._admin = AdminClient(with_logger(self._base_config))
        futures = self._admin.list_offsets(
            {tp: spec for tp in partitions}, request_timeout=TIMEOUT_S
        )
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def _check_open(self) -> None:
        if self._closed:
            raise QueueError("kafka: consumer is closed", retriable=False)

    def _on_error(self, err: KafkaError) -> None:
        level = logging.ERROR if err.fatal() else logging.WARNING
        log.log(level, "kafka consumer: %s", err.str())


def _headers(
    raw: Mapping[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None,
) -> dict[str, bytes]:
    """Kafka headers as the port's mapping (a repeated name keeps its last value)."""
    items = raw.items() if isinstance(raw, Mapping) else raw or ()
    return {k: v.encode() if isinstance(v, str) else v or b"" for k, v in items}


class _Commit:
    """One synchronous commit on a daemon thread of its own: one that never returns must keep
    neither the consumer's loop nor the process's exit waiting."""

    def __init__(self, client: _Client, partitions: list[TopicPartition]) -> None:
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: list[TopicPartition] | None = None
        self.error: KafkaException | None = None
        threading.Thread(
            target=self._run, args=(client, partitions), name="llmtap-kafka-commit", daemon=True
        ).start()

    def _run(self, client: _Client, partitions: list[TopicPartition]) -> None:
        try:
            self.result = client.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            self.error = exc
        finally:
            self.done.set()


def _close_quietly(client: _Client, poller: Poller) -> None:
    # a client is not to be closed under a consume still running in it: wait for that a while
    # (it may come back once the stuck commit does), then leave the group regardless
    poller.join(CLOSE_AFTER_POLL_S)
    try:
        client.close()
    except KafkaException as exc:
        log.warning("kafka consumer: closing the replaced client failed: %s", exc)
