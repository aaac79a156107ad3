"""Kafka client settings from ``queue_url``, topic creation, and error translation.

``kafka://h1:9092,h2:9092?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_username=u&
sasl_password=p`` — every query key is a librdkafka setting with ``_`` written for ``.``, so any
client option (TLS files, ``ssl_ca_location``, timeouts, buffer sizes) can be given the same way.
Two keys are llmtap's own and apply when it creates missing topics: ``retention_ms`` and
``replication_factor`` (default: the broker's). The URL may carry a password: set it through
``LLMTAP_QUEUE_URL`` or the config file, not on a command line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from llmtap.errors import QueueError
from llmtap.queue.urls import KAFKA_TOPIC_OPTIONS, QueueUrl

log = logging.getLogger(__name__)
LIBRDKAFKA_LOG = logging.getLogger("llmtap.queue.librdkafka")
"""librdkafka's own log lines (otherwise printed on stderr)."""

TIMEOUT_S = 15.0


def client_config(url: QueueUrl) -> dict[str, Any]:
    """librdkafka settings shared by producer, consumer and admin client."""
    config: dict[str, Any] = {"bootstrap.servers": url.location}
    for key, value in url.options.items():
        if key not in KAFKA_TOPIC_OPTIONS:
            config[key.replace("_", ".")] = value
    return config


def with_logger(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "logger": LIBRDKAFKA_LOG}


def queue_error(action: str, exc: KafkaException) -> QueueError:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return QueueError(f"kafka: {action} failed: {err.str()}", retriable=not err.fatal())
    return QueueError(f"kafka: {action} failed: {exc}")


@contextmanager
def translated(action: str) -> Iterator[None]:
    try:
        yield
    except KafkaException as exc:
        raise queue_error(action, exc) from exc


def ensure_topics(url: QueueUrl, topics: Sequence[str], partitions: int) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AdminClient(with_logger(client_config(url)))
    with translated("listing topics"):
        existing = admin.list_topics(timeout=TIMEOUT_S).topics
    for topic in topics:
        have = existing.get(topic)
        if have is not None and len(have.partitions) < partitions:
            log.warning(
                "kafka topic %r has %d partitions (settings ask for %d); not changed",
                topic,
                len(have.partitions),
                partitions,
            )
    missing = [t for t in dict.fromkeys(topics) if t not in existing]
    if not missing:
        return
    topic_config = {}
    if "retention_ms" in url.options:
        topic_config["retention.ms"] = str(int(url.number("retention_ms", -1)))
    replication = int(url.number("replication_factor", -1))
    futures = admin.create_topics(
        [NewTopic(t, partitions, replication, config=topic_config) for t in missing],
        operation_timeout=TIMEOUT_S,
        request_timeout=TIMEOUT_S,
    )
    for topic, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # created meanwhile by another process
            raise queue_error(f"creating topic {topic!r}", exc) from exc
        log.info("kafka: created topic %r with %d partitions", topic, partitions)
