"""Kafka producer (confluent-kafka): idempotent, ``acks=all``, zstd, never blocking the caller.

``publish`` only hands the message to librdkafka's local queue; a full queue raises
``QueueError`` at once (the caller spools the record) rather than waiting. Delivery reports are
served by a small daemon thread polling the client; a message Kafka finally refuses (after
librdkafka's own retries, within ``delivery.timeout.ms``) is kept for ``take_failed`` so the
caller can spool it: nothing is lost silently.

The local queue is kept to 64 MiB by default (librdkafka's own default is 1 GiB, too much for a
proxy); like every librdkafka setting it can be changed in the URL query
(``queue_buffering_max_kbytes=...``).
"""

from __future__ import annotations

import logging
import threading
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


class KafkaProducer:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self._failed: deque[Failed] = deque()
        self._broker = BrokerState("producer")
        self._client = _Client(
            {**DEFAULTS, **config, "error_cb": self._broker.error, "logger": QuietLibrdkafkaLog()}
        )
        self._stop = threading.Event()
        self._closed = False
        self._poller = threading.Thread(
            target=self._serve_delivery_reports, name="llmtap-kafka-producer", daemon=True
        )
        self._poller.start()

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
            raise queue_error(f"publishing to {topic!r}", exc) from exc

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self._broker.delivered()
            return
        self._failed.append((msg.topic(), msg.key(), msg.value()))
        # counted and logged once per batch by the caller that spools them (take_failed)
        log.debug("kafka: delivery to %r failed: %s", msg.topic(), err.str())

    def _serve_delivery_reports(self) -> None:
        while not self._stop.is_set():
            self._client.poll(0.1)
