"""The delivery worker: claims due deliveries from the outbox and sends them, off the consumer.

One loop thread claims, a pool of ``outbox_threads`` sends. At most ``outbox_endpoint_concurrency``
sends per endpoint are in flight at once (per worker: with N consumers, N times that). A webhook's
deliveries are first added from the stored calls after its cursor (``webhook_feed``), a window at
a time, only while it is neither backing off nor paused. A failed send puts the endpoint in
backoff (nothing more is claimed for it until then) and its deliveries each in their own, so a
dead endpoint costs one attempt per backoff step, never a busy loop, and never touches the
consumer's batches: the consumer enqueues PostHog events only, nothing for webhooks. A worker
that dies mid-send leaves its lease; once it lapses another worker sends the delivery again
(at-least-once: the receiver de-duplicates on ``Idempotency-Key``).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from llmtap.delivery.guard import TargetRefused, parse_endpoint, resolve
from llmtap.delivery.http_post import SendFailed, post
from llmtap.delivery.kinds import Kind, PostHogKind, WebhookKind
from llmtap.delivery.webhook_feed import WINDOW_MIN, WebhookFeed
from llmtap.errors import StoreError
from llmtap.outbound.egress import Egress
from llmtap.outbound.trust import outbound_context
from llmtap.settings import Settings
from llmtap.stores.records.alerts import ALERT
from llmtap.stores.records.integrations import POSTHOG, WEBHOOK
from llmtap.stores.records.outbox import Claimed, OutboxTable, RetryPolicy, Target
from llmtap.stores.records.outbox_tail import Tailed

log = logging.getLogger(__name__)

_TARGETS_PER_ROUND = 64
_SWEEP_EVERY_S = 600.0
_FEED_EVERY_S = 0.05
"""Webhooks are fed at most this often: a round runs after every finished send, and a window
(``webhook_feed.WINDOW_MIN``) lasts longer than this at any rate one endpoint is sent."""
_STORE_LOG_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    poll_s: float
    lease_ms: int
    endpoint_concurrency: int
    threads: int
    timeout_s: float
    allow_private: bool
    keep_ms: int
    policy: RetryPolicy
    trust: ssl.SSLContext
    """What TLS to endpoints trusts: the proxy's rule for providers (``outbound.trust``)."""
    egress: Egress | None
    """The egress proxy sends go through (the proxy's settings), None: direct."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        return cls(
            poll_s=settings.outbox_poll_s,
            lease_ms=int(settings.outbox_lease_s * 1000),
            endpoint_concurrency=settings.outbox_endpoint_concurrency,
            threads=settings.outbox_threads,
            timeout_s=settings.outbox_timeout_s,
            allow_private=settings.outbox_allow_private_targets,
            keep_ms=int(settings.outbox_keep_days * 86_400_000),
            policy=RetryPolicy(
                base_ms=int(settings.outbox_retry_base_s * 1000),
                max_ms=int(settings.outbox_retry_max_s * 1000),
                max_age_ms=int(settings.outbox_max_age_s * 1000),
                pause_after_failures=settings.outbox_pause_after_failures,
                pause_after_ms=int(settings.outbox_pause_after_s * 1000),
            ),
            trust=outbound_context(settings),
            egress=Egress.from_settings(settings),
        )


@dataclass(slots=True)
class DeliveryStats:
    sends: int = 0
    """Requests that the endpoint answered 2xx."""
    failures: int = 0
    """Requests refused, failed or answered otherwise."""


def default_kinds(settings: Settings) -> dict[str, Kind]:
    # an alert's firing or resolution is sent like a webhook delivery: one request, signed
    return {
        WEBHOOK: WebhookKind(),
        ALERT: WebhookKind(),
        POSTHOG: PostHogKind(settings.posthog_batch_size),
    }


def feed_window(target: Target, config: WorkerConfig, kind: Kind) -> int:
    """How many deliveries a webhook may have pending: a window (the rest of its calls wait in
    the log), but only what one round sends at once while it has not shown it takes deliveries
    (never answered 2xx, or failing now). A dead endpoint then costs a few payloads and rows,
    not a window's; a healthy one gets its full window after its first success."""
    at_once = config.endpoint_concurrency * kind.batch_size
    if target.consecutive_failures or target.last_success_ms is None:
        return at_once
    return max(WINDOW_MIN, at_once)


class DeliveryWorker:
    def __init__(
        self,
        table: OutboxTable,
        config: WorkerConfig,
        kinds: Mapping[str, Kind],
        clock: Callable[[], float] = time.time,
        feed: WebhookFeed | None = None,
    ) -> None:
        """``feed``: where webhooks' deliveries come from (None: only what is enqueued)."""
        self._table = table
        self._feed = feed
        self._config = config
        self._kinds = dict(kinds)
        self._clock = clock
        self._pool = ThreadPoolExecutor(config.threads, thread_name_prefix="llmtap-delivery")
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._total = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._last_feed = float("-inf")
        self._last_store_log = 0.0
        self.stats = DeliveryStats()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llmtap-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop claiming; sends in flight get ``timeout_s`` to finish (an unfinished one keeps
        its lease and is sent again by whichever worker finds it lapsed)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout_s
        while self._total and time.monotonic() < deadline:
            time.sleep(0.01)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                dispatched = self.run_once()
                self._maybe_sweep()
            except StoreError as exc:
                dispatched = 0
                now = time.monotonic()
                if now - self._last_store_log >= _STORE_LOG_EVERY_S:
                    self._last_store_log = now
                    log.warning("outbox: the records store is unavailable: %s", exc)
            except Exception:
                # the worker's edge: a bug must not end deliveries for good; the next round
                # starts over from the table
                log.exception("outbox: delivery round failed")
                dispatched = 0
            if not dispatched:
                self._wake.wait(self._config.poll_s)

    # -- one round ------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim what is due and hand it to the senders; how many sends were started."""
        config = self._config
        with self._lock:
            if self._total >= config.threads:
                return 0
        now = self._now_ms()
        started = 0
        targets = self._table.due_targets(now, _TARGETS_PER_ROUND)
        tailing: dict[str, Tailed] = {}
        if self._feed is not None and time.monotonic() - self._last_feed >= _FEED_EVERY_S:
            self._last_feed = time.monotonic()
            tailing = self._feed.tailing(now, _TARGETS_PER_ROUND)
        due = {t.id for t in targets}
        targets += [t.target for t in tailing.values() if t.target.id not in due]
        for target in targets:
            kind = self._kinds.get(target.kind)
            if kind is None:
                continue
            with self._lock:
                free = min(
                    config.endpoint_concurrency - self._in_flight.get(target.id, 0),
                    config.threads - self._total,
                )
            if free <= 0:
                # nothing can be sent to it now: no payloads built for it either
                continue
            webhook = tailing.get(target.id)
            if webhook is not None and self._feed is not None:
                self._feed.feed(webhook, feed_window(target, config, kind), now)
            claimed = self._table.claim(target.id, now, free * kind.batch_size, config.lease_ms)
            for start in range(0, len(claimed), kind.batch_size):
                chunk = claimed[start : start + kind.batch_size]
                with self._lock:
                    self._in_flight[target.id] = self._in_flight.get(target.id, 0) + 1
                    self._total += 1
                self._pool.submit(self._send, target, kind, chunk)
                started += 1
        return started

    def _send(self, target: Target, kind: Kind, claimed: Sequence[Claimed]) -> None:
        try:
            self._attempt(target, kind, claimed)
        except StoreError as exc:
            # the outcome could not be written: the lease lapses and the delivery is sent
            # again (the receiver de-duplicates); after stop the store may simply be closed
            level = logging.DEBUG if self._stop.is_set() else logging.WARNING
            log.log(level, "outbox: could not record a delivery to %s: %s", target.id, exc)
        except Exception:
            log.exception("outbox: sending to %s failed unexpectedly", target.id)
        finally:
            with self._lock:
                left = self._in_flight.get(target.id, 1) - 1
                if left:
                    self._in_flight[target.id] = left
                else:
                    self._in_flight.pop(target.id, None)
                self._total -= 1
            self._wake.set()

    def _attempt(self, target: Target, kind: Kind, claimed: Sequence[Claimed]) -> None:
        config = self._config
        try:
            outgoing = kind.outgoing(target, claimed, int(self._clock()))
            endpoint = parse_endpoint(outgoing.url)
            address = resolve(endpoint, config.allow_private)
            via = (
                None
                if config.egress is None
                else config.egress.proxy_for(endpoint.scheme, endpoint.host, endpoint.port)
            )
            answer = post(
                endpoint,
                address,
                outgoing.body,
                outgoing.headers,
                config.timeout_s,
                config.trust,
                via,
            )
        except TargetRefused as exc:
            self.stats.failures += 1
            self._table.failed(
                target.id, claimed, self._now_ms(), f"refused: {exc}", None, config.policy
            )
        except SendFailed as exc:
            self.stats.failures += 1
            self._table.failed(
                target.id, claimed, self._now_ms(), str(exc), exc.status, config.policy
            )
        else:
            self.stats.sends += 1
            self._table.succeeded(target.id, [c.id for c in claimed], self._now_ms(), answer.status)

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < _SWEEP_EVERY_S:
            return
        self._last_sweep = now
        removed = self._table.sweep(self._now_ms() - self._config.keep_ms)
        if removed:
            log.info("outbox: forgot %d finished deliveries", removed)
