"""Kafka producer (confluent-kafka): idempotent, ``acks=all``, zstd, never blocking the caller.

``publish`` only hands the message to librdkafka's local queue; a full queue raises
``QueueError`` at once (the caller spools the record) rather than waiting. Delivery reports are
served by a small daemon thread polling the client; a message Kafka finally refuses (after
librdkafka's own retries, within ``delivery.timeout.ms``) is kept for ``take_failed`` so the
caller can spool it: nothing is lost silently.

A fatal error (the idempotent producer's guarantees broken, e.g. fenced or an unrecoverable
sequence gap) leaves a librdkafka client unusable for good. The producer then replaces its client
before the next publish or flush: the old one's messages are purged and come back through
``take_failed``, so a long-running proxy recovers without a restart and loses nothing.

The local queue is kept to 64 MiB by default (librdkafka's own default is 1 GiB, too much for a
proxy); like every librdkafka setting it can be changed in the URL query
(``queue_buffering_max_kbytes=...``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _Client

from llmtap.errors import QueueError
from llmtap.queue.kafka_admin import queue_error
from llmtap.queue.kafka_outage import BrokerState, QuietLibrdkafkaLog
from llmtap.queue.port import Failed, PublishIncomplete

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "zstd",
    "linger.ms": 5,
    "queue.buffering.max.kbytes": 64 * 1024,
    "delivery.timeout.ms": 120_000,
    "client.id": "llmtap-producer",
}


STUCK_S = 30.0
"""Deliveries timing out this long with not one success in between: the client is replaced.

Seen under load (2026-12-01, test_kafka_faults.py's broker outage): after a broker restart a
librdkafka 2.16 producer reported no error and delivered nothing, every record timing out into
the spool for over a minute while a fresh client delivered at once. In a real outage a new client
fares no worse (the spool holds the records either way), so the rule need not tell the two apart.
"""


class KafkaProducer:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self._failed: deque[Failed] = deque()
        self._broker = BrokerState("producer")
        self._config = {
            **DEFAULTS,
            **config,
            "error_cb": self._on_error,
            "logger": QuietLibrdkafkaLog(),
        }
        self._renew = threading.Event()
        """Set (with ``_renew_reason``) when the client is to be replaced before its next use."""
        self._renew_reason = ""
        self._timing_out_since: float | None = None
        self._closed = False
        self.renewals = 0
        """Clients replaced after a fatal error or a stall (since start)."""
        self._client, self._stop, self._poller = self._open()

    def _open(self) -> tuple[_Client, threading.Event, threading.Thread]:
        client = _Client(self._config)
        stop = threading.Event()
        poller = threading.Thread(
            target=self._serve_delivery_reports,
            args=(client, stop),
            name="llmtap-kafka-producer",
            daemon=True,
        )
        poller.start()
        return client, stop, poller

    def publish(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        self._produce(topic, key, value, headers)

    def publish_batch(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        for accepted, (key, value) in enumerate(items):
            try:
                self._produce(topic, key, value, None)
            except QueueError as exc:
                if accepted == 0:
                    raise
                raise PublishIncomplete(str(exc), accepted=accepted) from exc

    def flush(self, timeout_s: float) -> int:
        self._renew_if_asked()
        with_pending: int = self._client.flush(timeout_s)
        return with_pending

    def take_failed(self) -> list[Failed]:
        failed = []
        while self._failed:
            failed.append(self._failed.popleft())
        return failed

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is pending for up to ``timeout_s``; what is left then is given up and
        returned by ``take_failed`` (so the caller can spool it), never dropped silently."""
        if self._closed:
            return
        self._closed = True
        left = self._client.flush(timeout_s)
        self._stop.set()
        self._poller.join()
        if left:
            self._client.purge()
            self._client.poll(0)  # serve the purged messages' delivery reports
            log.warning("kafka producer closed with %d message(s) undelivered", left)
        self._client.close()

    def _produce(
        self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes] | None
    ) -> None:
        self._renew_if_asked()
        try:
            self._client.produce(
                topic,
                value=value,
                key=key,
                headers=list(headers.items()) if headers else None,
                on_delivery=self._delivered,
            )
        except BufferError as exc:
            raise QueueError("kafka: the producer's local queue is full") from exc
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError._FATAL:
                # produce() reports it without the fatal flag; the error callback may not have
                # run yet. This message is refused (the caller spools it); the next one goes to
                # a new client.
                self._ask_renewal("a fatal error")
            raise queue_error(f"publishing to {topic!r}", exc) from exc

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self._timing_out_since = None
            self._broker.delivered()
            return
        self._failed.append((msg.topic(), msg.key(), msg.value()))
        if err.code() == KafkaError._MSG_TIMED_OUT:
            now = time.monotonic()
            if self._timing_out_since is None:
                self._timing_out_since = now
            elif now - self._timing_out_since >= STUCK_S:
                self._timing_out_since = None
                self._ask_renewal(f"{STUCK_S:.0f} s of deliveries timing out, none delivered")
        # counted and logged once per batch by the caller that spools them (take_failed)
        log.debug("kafka: delivery to %r failed: %s", msg.topic(), err.str())

    def _on_error(self, err: KafkaError) -> None:
        self._broker.error(err)
        if err.fatal():
            self._ask_renewal("a fatal error")

    def _ask_renewal(self, reason: str) -> None:
        self._renew_reason = reason
        self._renew.set()

    def _renew_if_asked(self) -> None:
        """Replace a client a fatal error made unusable (or that stalled, ``STUCK_S``). Its
        undelivered messages are purged and reported failed (``take_failed``): the caller spools
        them for the new client."""
        if not self._renew.is_set():
            return
        self._renew.clear()
        old, stop, poller = self._client, self._stop, self._poller
        stop.set()
        poller.join()
        old.purge()
        old.poll(0)  # the purged messages' delivery reports, into _failed
        old.close()
        self._client, self._stop, self._poller = self._open()
        self.renewals += 1
        log.warning(
            "kafka producer replaced after %s; %d undelivered message(s) handed back for the spool",
            self._renew_reason,
            len(self._failed),
        )

    def _serve_delivery_reports(self, client: _Client, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client.poll(0.1)
            except Exception:  # a dead poller would strand every report: failures never spooled
                log.exception("kafka producer: serving delivery reports failed; going on")
                stop.wait(0.1)
