"""Kafka's reachability as an operator wants it logged: one line per change, not per attempt.

While the brokers are away librdkafka retries every few tens of milliseconds and reports each
attempt twice (its log line and the error callback). ``BrokerState`` turns that into one WARNING
when the brokers become unreachable and one when a delivery succeeds again; the per-attempt lines
stay available at DEBUG (logger ``llmtap.queue.librdkafka``). Fatal errors are always logged.
The callbacks arrive on the poll thread and on whichever thread calls ``flush``: hence the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError

from llmtap.queue.kafka_admin import LIBRDKAFKA_LOG

log = logging.getLogger("llmtap.queue.kafka")

# librdkafka log facilities that repeat what the error callback reports, once per attempt
_PER_ATTEMPT = frozenset({"FAIL", "ERROR"})


class QuietLibrdkafkaLog:
    """librdkafka's ``logger``: connection failures at DEBUG (``BrokerState`` reports them)."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        if args and args[0] in _PER_ATTEMPT:
            level = logging.DEBUG
        LIBRDKAFKA_LOG.log(level, fmt, *args)


class BrokerState:
    def __init__(self, client: str) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("kafka %s: fatal error, this client is unusable: %s", self._client, err.str())
            return
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:
            log.warning("kafka unreachable (%s: %s); retrying quietly", self._client, err.str())
        else:
            log.debug("kafka %s: %s", self._client, err.str())

    def delivered(self) -> None:
        """A delivery succeeded: the brokers are reachable (again)."""
        if self._down_since is None:  # the common case: no lock on every delivery report
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning(
                "kafka reachable again (%s) after %.0fs", self._client, time.monotonic() - since
            )
