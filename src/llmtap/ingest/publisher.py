"""Publishing ingested logs: bodies first, then the records, confirmed before the caller answers.

Unlike the proxy's shipper (which must never delay a call and so spools), an ingestion endpoint
can make its caller wait and retry: it answers 2xx only once the records are durable in the queue,
and 503 when the queue or the body store refuses, so an acknowledged log is never lost and a
refused one is retried by the client (OTLP exporters do this on 503). Publishing is serialized:
Kafka reports failed deliveries per producer (``take_failed``), and one caller must not be told
about another's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from llmtap.errors import LlmtapError, QueueError, StoreError
from llmtap.ingest.built import Ingested
from llmtap.queue.port import ReportingProducer
from llmtap.record import encode
from llmtap.stores.bodies.port import BodyStore

log = logging.getLogger("llmtap.ingest")
FLUSH_TIMEOUT_S = 10.0


class IngestUnavailable(LlmtapError):
    """The queue or the body store cannot take the logs now: HTTP 503, the client retries."""

    retriable = True


class IngestPublisher:
    def __init__(
        self,
        producer: ReportingProducer,
        bodies: BodyStore,
        topic: str,
        *,
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
    ) -> None:
        self._producer = producer
        self._bodies = bodies
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._lock = threading.Lock()
        self.published = 0
        self.refused = 0

    def publish(self, logs: Sequence[Ingested]) -> None:
        """Write every body, then publish and flush the records; blocks (call it off the loop).

        Raises ``IngestUnavailable`` when anything was not confirmed: the caller answers 503 and
        the client sends the same logs again (bodies are overwritten, rows upserted by id).
        """
        if not logs:
            return
        try:
            for item in logs:
                for body in item.bodies:
                    self._bodies.put(body.key, body.data, body.content_type)
        except (StoreError, OSError) as exc:
            self.refused += len(logs)
            log.warning("body store refused %d ingested log(s): %s", len(logs), exc)
            raise IngestUnavailable(f"body store unavailable: {exc}") from exc
        items = [(i.record.request_id.encode(), encode(i.record)) for i in logs]
        with self._lock:
            try:
                self._producer.publish_batch(self._topic, items)
                pending = self._producer.flush(self._flush_timeout_s)
                failed = self._producer.take_failed()
            except QueueError as exc:
                self.refused += len(items)
                log.warning("queue refused %d ingested log(s): %s", len(items), exc)
                raise IngestUnavailable(f"queue unavailable: {exc}") from exc
        if pending or failed:
            self.refused += len(items)
            raise IngestUnavailable(
                f"queue did not confirm {max(pending, len(failed))} of {len(items)} log(s)"
            )
        self.published += len(items)

    def close(self) -> None:
        self._producer.close()
        self._bodies.close()
