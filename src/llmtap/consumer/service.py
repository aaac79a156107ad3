"""The consumer as a running thing: opens the queue and stores, runs the batch loop in a thread,
drains on stop. ``llmtap consume`` runs one until SIGTERM/SIGINT; ``llmtap serve`` embeds one in
its backend process next to the api.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from types import FrameType

from llmtap.alerts.evaluator import AlertEvaluator, EvaluatorConfig, MetricsReader
from llmtap.consumer.chain import build_chain, public_links
from llmtap.consumer.heap import settle_heap
from llmtap.consumer.runner import BatchRunner, RunnerConfig, RunnerStats
from llmtap.consumer.score_sync import ScoreSync
from llmtap.delivery.webhook_feed import WebhookFeed
from llmtap.delivery.worker import DeliveryWorker, WorkerConfig, default_kinds
from llmtap.errors import LlmtapError
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.port import GroupConsumer
from llmtap.settings import Settings
from llmtap.stores.analytics.store import AnalyticsStore
from llmtap.stores.factory import (
    analytics_from_records,
    open_records_and_bodies,
    open_sinks,
    refuse_split_analytics,
)
from llmtap.stores.records.analytics import RecordsAnalytics
from llmtap.stores.sink import Sink

log = logging.getLogger(__name__)

# Progress is logged at most this often: enough to see the consumer is alive and how fast.
_PROGRESS_EVERY_S = 60.0
DEFAULT_DRAIN_TIMEOUT_S = 60.0


class ConsumerService:
    """Owns the queue consumer, the DLQ producer, the stores and the runner.

    ``sinks`` may be passed in when the caller shares them (the embedded backend shares chDB with
    the api); the service then leaves closing them to the caller. ``source`` opens what the
    runner reads (default: the group ``settings.consumer_group`` on ``settings.topic``; replay
    and the DLQ re-drive pass their own). Everything it opened itself it closes on ``stop``, in
    reverse order: the queue consumer first, so it leaves the group before the stores close.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sinks: Sequence[Sink] | None = None,
        source: Callable[[Settings], GroupConsumer] | None = None,
    ) -> None:
        self._settings = settings
        if sinks is None:  # before anything opens: a refused configuration touches nothing
            refuse_split_analytics(settings, "the consumer")
        with ExitStack() as opened:  # closes what was opened if anything after it fails
            records, bodies = open_records_and_bodies(settings, opened)
            if sinks is None:
                sinks = open_sinks(settings)
                for sink in sinks:
                    opened.callback(sink.close)
            producer = open_producer(settings)
            opened.callback(producer.close)
            consumer = (source or open_consumer)(settings)
            opened.callback(consumer.close)
            reader: MetricsReader | None = None
            if settings.alerts_enabled and source is None:
                reader = next((s for s in sinks if isinstance(s, AnalyticsStore)), None)
                if reader is None and analytics_from_records(settings):
                    from_records = RecordsAnalytics(settings.records_url)
                    opened.callback(from_records.close)
                    reader = from_records
            self._resources = opened.pop_all()
        self._sinks = list(sinks)
        self.runner = BatchRunner(
            consumer,
            producer,
            build_chain(settings, records, bodies, records.integrations),
            sinks,
            RunnerConfig.from_settings(settings),
            outbox=records.outbox,
        )
        analytics = next((s for s in self._sinks if isinstance(s, AnalyticsStore)), None)
        self.score_sync = (
            None
            if analytics is None
            else ScoreSync(
                records.scores,
                analytics,
                interval_s=settings.scores_sync_interval_s,
                pending_ttl_s=settings.scores_pending_ttl_days * 86400.0,
            )
        )
        """Sends scores to the analytics store (none without one)."""
        self.delivery: DeliveryWorker | None = None
        """Sends what the outbox holds (``outbox_enabled``), beside the batch loop; a replay or a
        re-drive (``source`` given) only enqueues, the running consumers send."""
        if settings.outbox_enabled and source is None:
            feed = WebhookFeed(
                records.outbox_tail, bodies, public_links(settings), settings.webhook_body_max_bytes
            )
            self.delivery = DeliveryWorker(
                records.outbox,
                WorkerConfig.from_settings(settings),
                default_kinds(settings),
                feed=feed,
            )
        self.alerts: AlertEvaluator | None = None
        """Evaluates the alert rules over the metrics (``alerts_enabled``) and enqueues what
        fires and resolves; a replay or a re-drive evaluates nothing."""
        if reader is not None:
            self.alerts = AlertEvaluator(
                records.alerts, reader, EvaluatorConfig.from_settings(settings)
            )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sync_thread: threading.Thread | None = None
        self._closed = False
        self.failure: BaseException | None = None
        """Set when the loop died on an error it could not handle (the process should exit 1)."""

    # -- counters, for metrics ------------------------------------------------------------------

    @property
    def stats(self) -> RunnerStats:
        return self.runner.stats

    @property
    def processed(self) -> int:
        return self.runner.stats.processed

    @property
    def dead_lettered(self) -> int:
        return self.runner.stats.dead_lettered

    @property
    def retries(self) -> int:
        return self.runner.stats.retries

    @property
    def batches(self) -> int:
        return self.runner.stats.batches

    @property
    def thread_id(self) -> int | None:
        """The batch loop's Linux thread id once started (for ``consumer.priority``)."""
        return None if self._thread is None else self._thread.native_id

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, on_exit: Callable[[], None] | None = None) -> None:
        """Run the batch loop in a thread; ``on_exit`` is called when it ends, for any reason."""
        if self._thread is not None:
            raise RuntimeError("consumer service already started")
        self._thread = threading.Thread(
            target=self._loop, args=(on_exit,), name="llmtap-consumer", daemon=True
        )
        self._thread.start()
        if self.score_sync is not None:
            self._sync_thread = threading.Thread(
                target=self.score_sync.run, args=(self._stop,), name="llmtap-scores", daemon=True
            )
            self._sync_thread.start()
        if self.delivery is not None:
            self.delivery.start()
        if self.alerts is not None:
            self.alerts.start()
        log.info(
            "consumer started: %s -> %d sink(s), group %r",
            self._settings.topic,
            len(self._sinks),
            self._settings.consumer_group,
        )

    def stop(self, timeout: float = DEFAULT_DRAIN_TIMEOUT_S) -> bool:
        """Finish and commit the batch in hand, then close; False if it did not drain in time
        (nothing is closed then, and the uncommitted batch is redelivered to the next consumer)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("consumer did not drain within %.0fs", timeout)
                return False
        if self._sync_thread is not None:
            # a round in flight ends with its store call; the stores close after it
            self._sync_thread.join(timeout)
        self.close()
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.alerts is not None:
            self.alerts.stop()
        if self.delivery is not None:
            self.delivery.stop()
        self._resources.close()
        stats = self.stats
        log.info(
            "consumer stopped: %d processed, %d dead-lettered, %d batches",
            stats.processed,
            stats.dead_lettered,
            stats.batches,
        )

    def _loop(self, on_exit: Callable[[], None] | None) -> None:
        progress = _Progress(self.stats)
        try:
            while not self._stop.is_set():
                self.runner.run_once(self._stop)
                progress.maybe_log()
        except Exception as exc:
            # The loop's edge: whatever escaped the runner was not handled on purpose. Nothing of
            # the batch in hand was committed, so it is redelivered when the consumer restarts.
            log.exception("consumer stopped on an unexpected error")
            self.failure = exc
        finally:
            if on_exit is not None:
                on_exit()


class _Progress:
    def __init__(self, stats: RunnerStats) -> None:
        self._stats = stats
        self._since = time.monotonic()
        self._processed = stats.processed

    def maybe_log(self) -> None:
        now = time.monotonic()
        elapsed = now - self._since
        if elapsed < _PROGRESS_EVERY_S:
            return
        stats = self._stats
        done = stats.processed - self._processed
        if done or stats.dead_lettered:
            log.info(
                "consumed %d records (%.0f/s); totals: %d processed, %d dead-lettered, %d stalls",
                done,
                done / elapsed,
                stats.processed,
                stats.dead_lettered,
                stats.stalls,
            )
        self._since, self._processed = now, stats.processed


def run_consumer_until_signalled(settings: Settings) -> int:
    """``llmtap consume``: run until SIGTERM/SIGINT, drain, exit 0 (1 if the loop failed, 2 if it
    could not start)."""
    wake = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: draining", signal.Signals(signum).name)
        wake.set()

    try:
        service = ConsumerService(settings)
    except LlmtapError as exc:
        log.error("consumer cannot start: %s", exc)
        return 2
    settle_heap(settings.consumer_gc_threshold)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start(on_exit=wake.set)
        wake.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    drained = service.stop()
    return 0 if drained and service.failure is None else 1
