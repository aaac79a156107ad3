"""``llmtap replay``: read the logs topic again from an offset or a time, into the stores.

A replay is one pass, beside the live consumers and without disturbing them: it reads in a
throw-away consumer group of its own, runs every record through the same chain and sinks, and
stops once it has caught up with what was on the queue when it started. The sinks upsert on
(organization, request id), so a replayed record replaces its row, never adds one.

It never commits: a replay leaves no group offsets behind (the embedded queue's retention waits
on every group that ever committed on a topic, and Kafka would keep an abandoned group's offsets
for days). Re-driving the dead-letter topic is ``consumer.redrive``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from llmtap.consumer.service import ConsumerService
from llmtap.errors import ConfigError, QueueError
from llmtap.queue.factory import open_consumer
from llmtap.queue.forwarding import ForwardingConsumer
from llmtap.queue.port import GroupConsumer, Message
from llmtap.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_IDLE_S = 3.0
_WATCH_INTERVAL_S = 0.1


def now_ms() -> int:
    # the queue's own clock (queue/_sqlite_db.now_ms): int(time.time() * 1000) can be a
    # millisecond behind it at the same instant, and hide a message written just before
    return time.time_ns() // 1_000_000


def start_ms() -> int:
    """When a one-pass reader starts, as the bound ``timestamp_ms <= start`` of what it reads.

    Returns only once the clock has moved past that millisecond: a message published after
    the start (a re-drive's own dead letters, written a fraction of a millisecond later) could
    otherwise carry the same stamp, be taken for one that was there before, and be read again.
    """
    started = now_ms()
    while now_ms() <= started:
        time.sleep(0.0001)
    return started


class CatchUp:
    """Says when a one-pass reader has caught up: its polls have found nothing new for
    ``idle_s`` since it owned partitions (Kafka assigns them a moment after joining, and until
    then an empty poll proves nothing). Updated on the polling thread, read from any."""

    def __init__(self, consumer: GroupConsumer, idle_s: float) -> None:
        self._consumer = consumer
        self._idle_s = idle_s
        self._assigned = False
        self._idle_since: float | None = None

    def polled(self, found: bool) -> None:
        now = time.monotonic()
        if found:
            self._assigned = True
            self._idle_since = None
            return
        if not self._assigned:
            try:
                self._assigned = bool(self._consumer.lag())
            except QueueError:
                return
            if not self._assigned:
                return
        if self._idle_since is None:
            self._idle_since = now

    @property
    def done(self) -> bool:
        since = self._idle_since
        return since is not None and time.monotonic() - since >= self._idle_s


class ReplaySource(ForwardingConsumer):
    """The runner's ``GroupConsumer`` for a replay: hands on only messages put on the queue up to
    ``until_ms`` (the replay's start), at or after ``from_offset`` and, if given, of
    ``partitions``; swallows commits. (The caller seeks too; the offset check here covers
    partitions it could not name, such as a Kafka topic with more partitions than settings say.)
    """

    def __init__(
        self,
        inner: GroupConsumer,
        *,
        until_ms: int,
        from_offset: int = 0,
        partitions: Collection[int] | None = None,
        idle_s: float = DEFAULT_IDLE_S,
    ) -> None:
        super().__init__(inner)
        self._until_ms = until_ms
        self._from_offset = from_offset
        self._partitions = frozenset(partitions) if partitions is not None else None
        self._finished: set[tuple[str, int]] = set()
        self.catch_up = CatchUp(inner, idle_s)

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Message]:
        batch: list[Message] = []
        for m in self._inner.poll_batch(max_records, timeout_s):
            where = (m.topic, m.partition)
            if self._partitions is not None and m.partition not in self._partitions:
                continue
            if where in self._finished or m.offset < self._from_offset:
                continue
            if m.timestamp_ms > self._until_ms:
                # published after the replay began: the live consumers have it; this partition
                # is done (a record spooled during an outage and published late counts as new)
                self._finished.add(where)
                continue
            batch.append(m)
        self.catch_up.polled(bool(batch))
        return batch

    def commit(self, messages: Sequence[Message]) -> None:
        """Nothing to record: the replay's progress dies with it."""


@dataclass(frozen=True, slots=True)
class ReplayReport:
    processed: int
    """Records that went through every sink again (rows replaced, none added)."""
    dead_lettered: int
    """Records that failed again: dead-lettered once more (the DLQ may now hold them twice)."""
    complete: bool
    """False when stopped (signal) or failed before catching up."""


def replay(
    settings: Settings,
    *,
    from_offset: int | None = None,
    partitions: Collection[int] | None = None,
    from_time_ms: int | None = None,
    idle_s: float = DEFAULT_IDLE_S,
    stop: threading.Event | None = None,
) -> ReplayReport:
    """Re-consume ``settings.topic`` from ``from_offset`` (in ``partitions``, default all) or
    from the first message at or after ``from_time_ms``, into the stores, until caught up."""
    if (from_offset is None) == (from_time_ms is None):
        raise ConfigError("replay needs exactly one of from_offset and from_time_ms")
    if from_offset is not None and from_offset < 0:
        raise ConfigError("replay: the offset must be >= 0")
    until_ms = start_ms()
    group = f"{settings.consumer_group}-replay-{uuid.uuid4().hex[:12]}"
    sources: list[ReplaySource] = []

    def open_source(s: Settings) -> GroupConsumer:
        consumer = open_consumer(s, group=group)
        try:
            if from_time_ms is not None:
                consumer.seek_to_time(from_time_ms)
            else:
                assert from_offset is not None
                _seek_all(consumer, from_offset, partitions, s.partitions)
        except BaseException:
            consumer.close()
            raise
        source = ReplaySource(
            consumer,
            until_ms=until_ms,
            from_offset=from_offset or 0,
            partitions=partitions,
            idle_s=idle_s,
        )
        sources.append(source)
        return source

    where = (
        f"time {from_time_ms} ms"
        if from_time_ms is not None
        else f"offset {from_offset} of "
        + (f"partition(s) {sorted(partitions)}" if partitions is not None else "every partition")
    )
    log.info("replaying %s from %s (group %s)", settings.topic, where, group)
    service = ConsumerService(settings, source=open_source)
    complete = run_until(service, lambda: sources[0].catch_up.done, stop)
    stats = service.stats
    return ReplayReport(stats.processed, stats.dead_lettered, complete)


def _seek_all(
    consumer: GroupConsumer, offset: int, partitions: Collection[int] | None, count: int
) -> None:
    if partitions is not None:
        for p in sorted(partitions):
            try:
                consumer.seek(p, offset)
            except ValueError as exc:
                raise ConfigError(f"replay: {exc}") from exc
        return
    for p in range(count):
        # the topic may have fewer partitions than settings say (created elsewhere)
        with contextlib.suppress(ValueError):
            consumer.seek(p, offset)


def run_until(
    service: ConsumerService, finished: Callable[[], bool], stop: threading.Event | None
) -> bool:
    """Run ``service`` until ``finished()`` (True) or ``stop``/a failure (False), then drain."""
    stop = stop or threading.Event()
    ended = threading.Event()
    service.start(on_exit=ended.set)
    complete = False
    while not (stop.is_set() or ended.is_set()):
        if finished():
            complete = True
            break
        ended.wait(_WATCH_INTERVAL_S)
    drained = service.stop()
    if service.failure is not None:
        raise service.failure
    return complete and drained
