"""The shipper: everything that happens after the client has its response, off the loop.

One daemon thread per proxy process takes finished exchanges from an in-memory hand-off queue
(``submit`` is a lock-free put; the loop never waits), and per batch: resolves the organization
(the ``KeyDirectory`` the key check uses too), redacts and builds the ``LogRecord``, writes the
bodies, publishes the records in one call. When
the queue refuses (down, full), the records go to the local disk spool and are replayed, oldest
first, once it takes them again. A record that cannot be kept anywhere is counted in
``records_dropped`` and logged — never silently lost. Body-store failures do not stop the record:
it is published without that body and says why (``extra.body_error``).

Counters only go up: ``records_published`` counts records the queue accepted from ``publish``;
a record Kafka later reports undelivered is counted in ``delivery_failures`` (and then in
``records_spooled`` or ``records_dropped``), never taken back from ``records_published``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec

from llmtap.errors import LlmtapError, QueueError
from llmtap.keys import DEFAULT_ORG_ID, hash_key
from llmtap.keys.directory import KeyDirectory
from llmtap.proxy.capture import build_record
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.outage_log import OutageLog
from llmtap.queue.port import PublishIncomplete, ReportingProducer
from llmtap.queue.spool import Spool
from llmtap.record import EXTRA_BODY_ERROR, BodyRef, LogRecord, encode
from llmtap.stores.bodies.port import BodyStore, PackBuilder, pack_key

log = logging.getLogger("llmtap.shipper")

T = TypeVar("T")
_STOP = object()
BATCH_MAX = 512
BATCH_WINDOW_S = 0.002
BATCH_FULL = 128
"""The shipper gathers a batch for ``BATCH_WINDOW_S`` unless ``BATCH_FULL`` calls wait already:
every batch pays ~0.15 ms of fixed work (a transaction on the queue, a pack object in the body
store), so bigger batches make each record cheaper; but a batch is one burst of Python that holds
the loop to about a callback per GIL switch interval. A 10 ms window (tried on 2026-12-02, bursts
of 3-5 ms) was no cheaper per call and lost to 8ae922e at c=64 in the four same-run benchmarks
that measured it, 2 ms won in the two that measured it; 10 ms against 2 ms directly, and the
04:56 run against a16349b's 10 ms, were inside this machine's noise
(docs/decisions/2026-12-02-proxy-logging-cost.md)."""
GIVE_WAY_S = 0.001
GIVE_WAY_EVERY_S = 0.002
"""With more than ``give_way_backlog`` calls waiting, ``submit`` sleeps ``GIVE_WAY_S`` (the GIL
to the shipper) at most once per ``GIVE_WAY_EVERY_S``: on two cores the loop thread, never idle
at saturation, otherwise outran the shipper 2-4x and the backlog's garbage-collection pauses
reached 400 ms before records were dropped (docs/decisions/2026-12-02-shipper-gil-steps.md)."""
SPOOL_RETRY_S = 1.0
SPOOL_FLUSH_S = 5.0
SPOOL_DRAIN_S = 0.25
"""How long a spool replay waits for the records in flight to be confirmed first (while the
queue is down this pauses the shipper once per ``SPOOL_RETRY_S``)."""
BODY_WARNING_EVERY_S = 10.0


class Lazy(Generic[T]):
    """Opens a resource (queue producer, body store) on first use, and again after a failed open
    (at most once per ``retry_s``), so a proxy starts and answers calls even while its queue or
    body store cannot be reached. ``get`` raises ``error`` while the resource is not open."""

    def __init__(
        self,
        opener: Callable[[], T],
        error: type[LlmtapError],
        what: str,
        retry_s: float = SPOOL_RETRY_S,
    ) -> None:
        self._opener = opener
        self._error = error
        self._what = what
        self._retry_s = retry_s
        self._value: T | None = None
        self._next_try = 0.0

    def get(self) -> T:
        if self._value is not None:
            return self._value
        now = time.monotonic()
        if now < self._next_try:
            raise self._error(f"{self._what} not open yet (retrying)")
        self._next_try = now + self._retry_s
        try:
            self._value = self._opener()
        except (LlmtapError, OSError) as exc:
            log.warning("cannot open the %s (will retry): %s", self._what, exc)
            raise self._error(f"cannot open the {self._what}: {exc}") from exc
        return self._value

    def close(self, closer: Callable[[T], None]) -> None:
        if self._value is not None:
            closer(self._value)


class Shipper:
    def __init__(
        self,
        producer: Lazy[ReportingProducer],
        bodies: Lazy[BodyStore],
        spool: Spool,
        keys: KeyDirectory | None,
        metrics: ProxyMetrics,
        topic: str,
        *,
        max_decoded_bytes: int,
        max_backlog: int = 100_000,
        give_way_backlog: int = 0,
        idle_sync_s: float = 0.0,
    ) -> None:
        self._producer = producer
        # With group commit the queue syncs at most every idle_sync_s while records come; once
        # they stop, the shipper's idle tick syncs what the last batches committed.
        self._idle_tick_s = min(idle_sync_s, SPOOL_RETRY_S) if idle_sync_s > 0 else SPOOL_RETRY_S
        self._unsynced = False
        self._max_backlog = max_backlog
        # the backlog from which submit looks further: giving way, or (at max) dropping
        self._busy_backlog = give_way_backlog if 0 < give_way_backlog < max_backlog else max_backlog
        self._next_give_way = 0.0
        self._next_backlog_warning = 0.0
        self._next_body_warning = 0.0
        self._bodies = bodies
        self._spool = spool
        self._keys = keys
        self._max_decoded_bytes = max_decoded_bytes
        self._metrics = metrics
        self._topic = topic
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="llmtap-shipper", daemon=True)
        self._next_spool_try = 0.0
        self._outage = OutageLog()
        # records_dropped is the one counter both the loop (submit) and the shipper thread bump
        self._dropped_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def submit(self, exchange: Exchange) -> None:
        """Called on the loop. Past ``give_way_backlog`` waiting calls it pauses the loop now
        and then so the shipper catches up; beyond ``max_backlog`` the record is counted lost."""
        backlog = self._inbox.qsize()
        if backlog >= self._busy_backlog:
            if backlog >= self._max_backlog:
                self._drop_one()
                return
            self._give_way()
        self._inbox.put(exchange)

    def _drop_one(self) -> None:
        self._count_dropped(1)
        now = time.monotonic()
        if now >= self._next_backlog_warning:
            self._next_backlog_warning = now + 10.0
            log.error(
                "shipper backlog over %d calls: dropping records (%d so far)",
                self._max_backlog,
                self._metrics.records_dropped,
            )

    def _give_way(self) -> None:
        now = time.monotonic()
        if now < self._next_give_way:
            return
        self._metrics.shipper_give_ways += 1
        time.sleep(GIVE_WAY_S)  # the loop's GIL to the shipper thread
        self._next_give_way = time.monotonic() + GIVE_WAY_EVERY_S

    def _count_dropped(self, count: int) -> None:
        with self._dropped_lock:
            self._metrics.records_dropped += count

    def close(self, timeout_s: float = 30.0) -> None:
        """Ship everything submitted so far, flush the queue, stop the thread."""
        self._inbox.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("shipper did not finish within %ss; unshipped records remain", timeout_s)
        self._spool.close()
        self._bodies.close(lambda b: b.close())
        self._producer.close(lambda p: p.close())

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._inbox.get(timeout=self._idle_tick_s)
            except queue.Empty:
                self._sync_queue()
                self._spool_failed_deliveries()
                self._replay_spool()
                continue
            # Gather for a moment: at low rates every call would otherwise be a batch (and a
            # queue commit) of its own. The client already has its answer; a record is later
            # by at most BATCH_WINDOW_S. The thread sleeps through the window and then takes
            # what came: waiting on the inbox instead woke it (and took the GIL from the loop)
            # once per call. A backlog that fills a batch already is not waited for.
            if self._inbox.qsize() < BATCH_FULL:
                time.sleep(BATCH_WINDOW_S)
            batch, stopping = self._take_batch(first)
            self._metrics.shipper_backlog = self._inbox.qsize()
            if batch:
                self._ship(batch)
            self._replay_spool()
        self._flush()

    def _take_batch(self, first: object) -> tuple[list[Exchange], bool]:
        """``first`` and what waits behind it, up to ``BATCH_MAX``; True once ``_STOP`` is seen."""
        batch: list[Exchange] = []
        item = first
        while True:
            if item is _STOP:
                return batch, True
            assert isinstance(item, Exchange)
            batch.append(item)
            if len(batch) >= BATCH_MAX:
                return batch, False
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return batch, False

    def _ship(self, batch: list[Exchange]) -> None:
        records: list[LogRecord] = []
        orgs: list[str | None] = []
        # one pack per organization for the whole batch: each record gets its body keys as it
        # is built (the pack is stored before the records are published)
        packs: dict[str | None, PackBuilder] = {}
        for exchange in batch:
            # No explicit yield here: the loop waits at most one GIL switch interval (set short in
            # server.py), and a yield per record made the shipper wait that long per record.
            try:
                tap = exchange.tap
                assert tap is not None
                key_hash = None if tap.auth is None else hash_key(tap.auth)
                org = self._org_for(key_hash)
                pack = packs.get(org)
                if pack is None:
                    pack = packs[org] = PackBuilder(pack_key(org, uuid.uuid4().hex))
                captured = build_record(
                    exchange,
                    org,
                    max_decoded_bytes=self._max_decoded_bytes,
                    auth_key_hash=key_hash,
                    body_keys=pack.add,
                )
            except Exception:  # fail-open edge: one broken capture must not stop the others
                self._metrics.shipper_errors += 1
                self._count_dropped(1)
                log.exception("could not build the log record of one call; it is lost")
                continue
            records.append(captured.record)
            orgs.append(org)
        failed = self._store_packs(packs)
        if failed:
            records = [
                _without_body_keys(r, failed[org]) if org in failed else r
                for r, org in zip(records, orgs, strict=True)
            ]
        items = [(r.request_id.encode(), encode(r)) for r in records]
        if not items:
            return
        try:
            producer = self._producer.get()
            producer.publish_batch(self._topic, items)
            self._metrics.records_published += len(items)
            self._unsynced = True
        except PublishIncomplete as exc:
            self._metrics.records_published += exc.accepted
            self._to_spool(items[exc.accepted :], str(exc))
        except QueueError as exc:
            self._to_spool(items, str(exc))
        self._spool_failed_deliveries()

    def _sync_queue(self) -> None:
        """Make what the queue took durable (its ``flush``) once calls stop coming."""
        if not self._unsynced:
            return
        self._unsynced = False
        try:
            self._producer.get().flush(0)
        except QueueError as exc:
            # not retried every tick (a failing disk would log one line per tick): the queue
            # syncs again with the next publish, and at shutdown
            log.warning("could not sync the queue: %s", exc)

    def _org_for(self, key_hash: str | None) -> str | None:
        """The organization of the call made with the key hashed ``key_hash`` (None: the call
        sent no key); None when the key directory cannot tell (the consumer authenticates
        again; the bodies then live under ``_unassigned``)."""
        if self._keys is None:
            return None
        if key_hash is None:  # an empty Helicone-Auth is a key (an unknown one), as at the gate
            return DEFAULT_ORG_ID
        try:
            return self._keys.org_for_key_hash(key_hash)
        except LlmtapError as exc:
            log.warning("organization lookup failed, left to the consumer: %s", exc)
            return None

    def _spool_failed_deliveries(self) -> None:
        """Kafka reports failed deliveries after ``publish`` returned: they go to the spool too."""
        try:
            failed = self._producer.get().take_failed()
        except QueueError:
            return
        if failed:
            self._metrics.delivery_failures += len(failed)
            kept = self._spool.append_many(failed)
            self._metrics.records_spooled += kept
            self._count_dropped(len(failed) - kept)
            self._metrics.spool_pending = self._spool.pending
            reason = f"kafka reported {len(failed)} delivery(ies) failed"
            self._outage.spooled(kept, reason, self._spool.pending)

    def _store_packs(self, packs: dict[str | None, PackBuilder]) -> dict[str | None, str]:
        """Store each organization's pack; why, for each organization whose pack the store
        refused (its records then go without body keys, saying why)."""
        failed: dict[str | None, str] = {}
        for org, pack in packs.items():
            if not len(pack):
                continue  # every body of the organization's calls was omitted
            try:
                self._bodies.get().put(pack.key, pack.blob(), "application/octet-stream")
            except (LlmtapError, OSError) as exc:
                self._metrics.shipper_errors += 1
                self._metrics.bodies_dropped += len(pack)
                self._warn_bodies_dropped(exc)
                failed[org] = f"{type(exc).__name__}: {exc}"
        return failed

    def _warn_bodies_dropped(self, exc: BaseException) -> None:
        """One line per ``BODY_WARNING_EVERY_S`` however many packs fail: a store that is down
        fails every batch."""
        now = time.monotonic()
        if now < self._next_body_warning:
            return
        self._next_body_warning = now + BODY_WARNING_EVERY_S
        log.warning(
            "body store refused a pack; its records go without bodies (%d body(ies) so far): %s",
            self._metrics.bodies_dropped,
            exc,
        )

    def _to_spool(self, items: list[tuple[bytes, bytes]], reason: str) -> None:
        kept = self._spool.append_many((self._topic, k, v) for k, v in items)
        self._metrics.records_spooled += kept
        self._count_dropped(len(items) - kept)
        self._metrics.spool_pending = self._spool.pending
        self._outage.spooled(kept, reason, self._spool.pending)

    def _replay_spool(self) -> None:
        now = time.monotonic()
        if now < self._next_spool_try:
            return
        self._next_spool_try = now + SPOOL_RETRY_S
        try:
            producer = self._producer.get()
            # Messages still in flight (Kafka waiting for a broker) would be joined by another
            # copy of the whole spool on every attempt: wait until the producer is drained. Not
            # with flush(0): right after a batch was published it is always in flight, so under
            # steady traffic the spool waited for a quiet second that may never come. A broker
            # that is back confirms within milliseconds (flush sends at once, linger or not).
            if self._spool.pending and producer.flush(SPOOL_DRAIN_S):
                return
            # short flush: while the broker is still down the shipper must get back to new calls
            replayed = self._spool.replay(producer, flush_timeout_s=SPOOL_FLUSH_S)
        except QueueError as exc:
            log.debug(
                "queue unavailable, %d record(s) wait in the spool: %s", self._spool.pending, exc
            )
            self._outage.still_away(self._spool.pending)
            return
        finally:
            self._metrics.spool_pending = self._spool.pending
        if replayed:
            self._metrics.spool_replayed += replayed
            log.debug("replayed %d spooled record(s) into the queue", replayed)
        if not self._spool.pending:
            self._outage.drained()

    def _flush(self) -> None:
        try:
            pending = self._producer.get().flush(10.0)
        except QueueError as exc:
            log.error("final flush failed: %s", exc)
            return
        if pending:
            log.error("%d record(s) not confirmed by the queue at shutdown", pending)


def _keyless(ref: BodyRef | None) -> BodyRef | None:
    return ref if ref is None or ref.key is None else msgspec.structs.replace(ref, key=None)


def _without_body_keys(record: LogRecord, reason: str) -> LogRecord:
    """``record`` whose bodies the store refused: no keys, and why in ``extra``."""
    return msgspec.structs.replace(
        record,
        request_body=_keyless(record.request_body),
        response_body=_keyless(record.response_body),
        extra={**record.extra, EXTRA_BODY_ERROR: reason},
    )
