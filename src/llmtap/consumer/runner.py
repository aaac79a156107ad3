"""The batch runner: poll → decode → handler chain per record → sinks in order → commit.

The guarantee is at-least-once with idempotent sinks: offsets are committed only after every sink
took the batch and the batch's dead letters are durable, so a crash at any point redelivers the
batch and the sinks' upserts keep one row per request id.

Failures sort into three kinds:

* **poison** — a record that can never be processed (undecodable bytes, a row a store refuses, a
  handler bug): dead-lettered with its original bytes at once.
* **retriable, about one record** (a body not yet visible): tried again after a backoff, up to
  ``max_attempts`` in all, then dead-lettered. Records are retried in rounds, so many such
  records cost one backoff, not one each.
* **outage** (``StoreUnavailable`` from a handler; any retriable error from a sink, the DLQ or the
  commit): not the record's fault, so never dead-lettered. The runner waits (exponential backoff,
  capped) and retries the same batch in place until it succeeds or ``stop`` is set; on stop the
  batch is left uncommitted and is redelivered.

Partition revocation (a rebalance, or this member leaving the group on close) only happens inside
the consumer's ``poll_batch``/``close``, and a batch is always finished (committed, or rewound)
before the next poll: so a revocation never cuts a batch in half. What it can find is a batch
that every sink took but whose commit failed; the revocation hook commits those offsets for the
partitions being taken away, so the next owner does not redo them (docs/consumer.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llmtap.consumer.batch import Batch, Item, RowKey
from llmtap.consumer.context import Handler
from llmtap.consumer.dlq import DeadLetter, dead_letter_headers, encode_dead_letter
from llmtap.consumer.overlap import Alongside, OverlappingSink
from llmtap.consumer.stages import ChainRunner
from llmtap.errors import LlmtapError, QueueError
from llmtap.queue.port import GroupConsumer, Message, ReportingProducer
from llmtap.record import RecordDecodeError, decode
from llmtap.settings import Settings
from llmtap.stores.records.outbox import Delivery, TargetSpec
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows, Sink

log = logging.getLogger(__name__)


class Outbox(Protocol):
    """Where the export handlers' deliveries go once the sinks took the batch
    (``stores.records.outbox.OutboxTable``): idempotent on (target, dedup key)."""

    def enqueue(
        self, targets: Sequence[TargetSpec], deliveries: Sequence[Delivery], now_ms: int
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    dlq_topic: str
    batch_max_records: int = 1000
    batch_max_wait_s: float = 0.2
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    dlq_flush_timeout_s: float = 10.0
    chain_chunk: int = 64
    overlap_sinks: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> RunnerConfig:
        return cls(
            dlq_topic=settings.dlq_topic,
            batch_max_records=settings.batch_max_records,
            batch_max_wait_s=settings.batch_max_wait_s,
            max_attempts=max(1, settings.max_attempts),
            retry_backoff_s=settings.retry_backoff_s,
            retry_backoff_max_s=settings.retry_backoff_max_s,
            chain_chunk=settings.consumer_chain_chunk,
            overlap_sinks=settings.consumer_overlap_sinks,
        )

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        return float(
            min(self.retry_backoff_s * 2 ** max(0, failures - 1), self.retry_backoff_max_s)
        )


@dataclass(slots=True)
class RunnerStats:
    """Counters since start; read by the service for progress logs and metrics."""

    processed: int = 0
    """Records whose row went through every sink, counted when their batch is committed."""
    dead_lettered: int = 0
    retries: int = 0
    """Re-tries of single records after a retriable error."""
    stalls: int = 0
    """Waits on an outage (store, DLQ or commit) with the batch held in place."""
    batches: int = 0
    """Batches committed."""
    enqueued: int = 0
    """Deliveries handed to the outbox (a redelivered batch counts its again; the outbox
    keeps one)."""
    deliveries_dropped: int = 0
    """Deliveries the outbox refused for good or that could not be rendered (logged)."""


class BatchRunner:
    def __init__(
        self,
        consumer: GroupConsumer,
        dlq_producer: ReportingProducer,
        handlers: Sequence[Handler],
        sinks: Sequence[Sink],
        config: RunnerConfig,
        outbox: Outbox | None = None,
    ) -> None:
        self._consumer = consumer
        self._outbox = outbox
        self._dlq = dlq_producer
        self._chain = ChainRunner(handlers, config.max_attempts, config.chain_chunk)
        self._sinks = list(sinks)
        self._config = config
        self._never = threading.Event()
        self._poll_failures = 0
        self._written: dict[tuple[str, int], Message] = {}
        """Per partition, the last message of a batch every sink took but whose commit failed."""
        self.stats = RunnerStats()
        consumer.set_on_revoke(self._on_revoke)

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set; the batch in hand is finished and committed."""
        while not stop.is_set():
            self.run_once(stop)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Process one batch; returns how many messages were committed (0 if none or held back)."""
        stop = stop or self._never
        config = self._config
        try:
            messages = self._consumer.poll_batch(config.batch_max_records, config.batch_max_wait_s)
        except QueueError as exc:
            if not exc.retriable:
                raise
            self._poll_failures += 1
            self._wait_outage("queue", exc, self._poll_failures, stop)
            return 0
        self._poll_failures = 0
        if not messages:
            return 0
        batch = Batch(messages)
        items = [self._decode(Item(i, m), batch) for i, m in enumerate(messages)]
        decoded = [item for item in items if item.record is not None]
        done = (
            self._process(decoded, batch, stop)
            and self._write(batch, stop)
            and self._publish_dead(batch, stop)
        )
        if not done:
            self._rewind(messages)
            return 0
        if not self._commit(messages, stop):
            return 0
        self.stats.batches += 1
        self.stats.processed += batch.written
        return len(messages)

    # -- stages ---------------------------------------------------------------------------------

    def _decode(self, item: Item, batch: Batch) -> Item:
        try:
            item.record = decode(item.message.value)
        except RecordDecodeError as exc:
            batch.dead_letter(item, exc)
        return item

    def _process(self, items: list[Item], batch: Batch, stop: threading.Event) -> bool:
        """Run the chain over every record; False when stopped while waiting out an outage."""
        pending = items
        rounds = outages = 0
        while pending:
            done = self._chain.run_round(pending, batch)
            self.stats.retries += done.retries
            pending = done.retry
            if not pending:
                break
            if done.outage is not None:
                outages += 1
                if self._wait_outage(done.where, done.outage, outages, stop):
                    return False
            else:
                rounds += 1
                # bounded (max_attempts rounds), so it is not cut short by stop: stopping must not
                # turn a record that would have succeeded into a dead letter
                time.sleep(self._config.backoff(rounds))
        batch.good.sort(key=lambda item: item.index)
        return True

    def _write(self, batch: Batch, stop: threading.Event) -> bool:
        # one row per record: copies of one record inside a batch reach the sinks once (Postgres
        # refuses to touch a row twice in one statement). Different records claiming one request
        # id stay apart: the records store keeps the first and moves the others to fresh ids.
        live: dict[RowKey, list[Item]] = {}
        for item in batch.good:
            assert item.row is not None
            live.setdefault(_key(item.row), []).append(item)
        sinks = list(self._sinks)
        while sinks:
            sink = sinks.pop(0)
            alongside = None
            if self._config.overlap_sinks and sinks and isinstance(sink, OverlappingSink):
                alongside = Alongside(sinks[0], live)
            if not self._write_sink(sink, live, batch, stop, alongside):
                return False
            if alongside is not None and alongside.done:
                sinks.pop(0)  # the next sink took the batch while this one committed
        if self._outbox is not None and not self._enqueue(self._outbox, live, stop):
            return False
        batch.written = sum(len(items) for items in live.values())
        return True

    def _enqueue(
        self, outbox: Outbox, live: dict[RowKey, list[Item]], stop: threading.Event
    ) -> bool:
        """After every sink took the rows: their deliveries into the outbox, made from the rows
        as stored. A crash before this point redelivers the batch and enqueues then; after it,
        the redelivered batch's deliveries are the same keys and the outbox keeps one each."""
        targets: list[TargetSpec] = []
        deliveries: list[Delivery] = []
        for items in live.values():
            row = _row(items)
            for pending in items[-1].deliveries:
                try:
                    deliveries.append(pending.render(row))
                except Exception:
                    # an export bug must not hold the log: the row is stored, the delivery lost
                    log.exception("could not render a delivery for request %s", row.request_id)
                    self.stats.deliveries_dropped += 1
                    continue
                if pending.target is not None:
                    targets.append(pending.target)
        if not deliveries:
            return True
        failures = 0
        while True:
            try:
                outbox.enqueue(targets, deliveries, int(time.time() * 1000))
            except LlmtapError as exc:
                if not exc.retriable:
                    log.error("the outbox refused %d deliveries: %s", len(deliveries), exc)
                    self.stats.deliveries_dropped += len(deliveries)
                    return True
                failures += 1
                if self._wait_outage("outbox", exc, failures, stop):
                    return False
            else:
                self.stats.enqueued += len(deliveries)
                return True

    def _write_sink(
        self,
        sink: Sink,
        live: dict[RowKey, list[Item]],
        batch: Batch,
        stop: threading.Event,
        alongside: Alongside | None = None,
    ) -> bool:
        failures = 0
        one_by_one = False
        while live:
            try:
                if one_by_one:
                    self._write_singly(sink, live, batch)
                elif alongside is not None and isinstance(sink, OverlappingSink):
                    # only a run beside this very attempt counts (an earlier attempt's commit
                    # may have failed after it)
                    alongside.done = False
                    sink.write_batch_alongside([_row(items) for items in live.values()], alongside)
                else:
                    sink.write_batch([_row(items) for items in live.values()])
                return True
            except PoisonRows as exc:
                # named by the id the sink wrote, which may be a fresh one (claims)
                refused = [(key, _row(live[key]).request_id) for key in live]
                refused = [(key, rid) for key, rid in refused if rid in exc.reasons]
                if not refused:
                    one_by_one = True
                    continue
                for key, rid in refused:
                    error = PoisonRows({rid: exc.reasons[rid]})
                    _dead_letter_row(live.pop(key), sink, error, batch)
            except LlmtapError as exc:
                if not exc.retriable:
                    # a refusal that does not say which rows: find them one at a time
                    one_by_one = True
                    continue
                failures += 1
                if self._wait_outage(f"sink:{sink.name}", exc, failures, stop):
                    return False
        return True

    def _write_singly(self, sink: Sink, live: dict[RowKey, list[Item]], batch: Batch) -> None:
        for key, items in list(live.items()):
            try:
                sink.write_batch([_row(items)])
            except LlmtapError as exc:
                if exc.retriable:
                    raise
                _dead_letter_row(live.pop(key), sink, exc, batch)

    def _publish_dead(self, batch: Batch, stop: threading.Event) -> bool:
        """Hand the batch's dead letters to the DLQ and wait until they are durable."""
        if not batch.dead:
            return True
        topic = self._config.dlq_topic
        unsent = [(letter, encode_dead_letter(letter)) for letter in batch.dead]
        sent: list[tuple[DeadLetter, bytes]] = []
        failures = 0
        while True:
            try:
                while unsent:
                    letter, value = unsent[0]
                    self._dlq.publish(
                        topic, letter.original_key, value, dead_letter_headers(letter)
                    )
                    sent.append(unsent.pop(0))
                pending = self._dlq.flush(self._config.dlq_flush_timeout_s)
                # Kafka reports a failed delivery after the fact; those go out again
                refused = {value for _, _, value in self._dlq.take_failed()}
                unsent = [(letter, value) for letter, value in sent if value in refused]
                sent = [(letter, value) for letter, value in sent if value not in refused]
                if pending or unsent:
                    raise QueueError(
                        f"{pending + len(unsent)} dead letter(s) not durable yet", retriable=True
                    )
                self.stats.dead_lettered += len(batch.dead)
                return True
            except QueueError as exc:
                if not exc.retriable:
                    raise
                failures += 1
                if self._wait_outage("dlq", exc, failures, stop):
                    return False

    def _commit(self, messages: Sequence[Message], stop: threading.Event) -> bool:
        failures = 0
        while True:
            try:
                self._consumer.commit(messages)
            except QueueError as exc:
                if not exc.retriable:
                    raise
                failures += 1
                if failures >= self._config.max_attempts:
                    # everything is written: a lost commit only means a harmless redelivery, and
                    # the revocation hook tries once more before another member takes over
                    log.warning(
                        "commit failed %d times, batch will be redelivered: %s", failures, exc
                    )
                    self._remember_written(messages)
                    return False
                if self._wait_outage("commit", exc, failures, stop):
                    self._remember_written(messages)
                    return False
            else:
                for m in messages:
                    self._written.pop((m.topic, m.partition), None)
                return True

    def _remember_written(self, messages: Sequence[Message]) -> None:
        for m in messages:
            last = self._written.get((m.topic, m.partition))
            if last is None or m.offset > last.offset:
                self._written[(m.topic, m.partition)] = m

    def _on_revoke(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Commit what was written but not committed on the partitions being taken away; a
        failure here only means the next owner processes those records again (idempotently)."""
        finished = [m for tp in partitions if (m := self._written.pop(tp, None)) is not None]
        if not finished:
            return
        try:
            self._consumer.commit(finished)
        except QueueError as exc:
            log.warning(
                "could not commit %d revoked partition(s); their last batch will be redelivered:"
                " %s",
                len(finished),
                exc,
            )
        else:
            log.info("committed the written batch of %d revoked partition(s)", len(finished))

    def _rewind(self, messages: Sequence[Message]) -> None:
        """Put the group's position back on an uncommitted batch so nothing after it is committed
        before it."""
        first: dict[tuple[str, int], int] = {}
        for m in messages:
            first[(m.topic, m.partition)] = min(
                first.get((m.topic, m.partition), m.offset), m.offset
            )
        for (topic, partition), offset in first.items():
            self._consumer.seek(partition, offset, topic)

    def _wait_outage(
        self, where: str, error: BaseException, failures: int, stop: threading.Event
    ) -> bool:
        """Back off before retrying the batch in place; True when stop was set meanwhile."""
        self.stats.stalls += 1
        delay = self._config.backoff(failures)
        log.log(
            logging.WARNING if failures == 1 or failures % 10 == 0 else logging.DEBUG,
            "%s unavailable (%s: %s); holding the batch, retry %d in %.1fs",
            where,
            type(error).__name__,
            error,
            failures,
            delay,
        )
        return stop.wait(delay)


def _key(row: RequestRow) -> RowKey:
    return (row.org_id, row.request_id, row.record_digest)


def _row(items: list[Item]) -> RequestRow:
    row = items[-1].row
    assert row is not None
    return row


def _dead_letter_row(items: list[Item], sink: Sink, error: BaseException, batch: Batch) -> None:
    for item in items:
        item.stage = f"sink:{sink.name}"
        item.failed()
        batch.dead_letter(item, error)
