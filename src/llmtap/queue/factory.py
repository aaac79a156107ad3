"""The one place a queue adapter is chosen: by the scheme of ``settings.queue_url``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from llmtap.errors import QueueError
from llmtap.queue.port import GroupConsumer, ReportingProducer
from llmtap.queue.urls import QueueUrl, parse_queue_url
from llmtap.settings import Settings

log = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000


def open_producer(settings: Settings, *, group_commit_ms: int = 0) -> ReportingProducer:
    """A producer for ``settings.queue_url``; topics are created on first use if missing.

    ``group_commit_ms`` > 0 lets the embedded queue fsync at most that often (the proxy's
    shipper only: a caller that acknowledges on publish needs every publish on disk)."""
    url = parse_queue_url(settings.queue_url)
    if url.scheme == "kafka":
        return _kafka_producer(url, settings)
    from llmtap.queue.sqlite import SqliteProducer

    return SqliteProducer(
        Path(url.location),
        settings.partitions,
        busy_timeout_ms=int(url.number("busy_timeout_ms", 5000)),
        group_commit_s=group_commit_ms / 1000,
    )


def open_consumer(
    settings: Settings, group: str | None = None, topics: Sequence[str] | None = None
) -> GroupConsumer:
    """A member of ``group`` (default ``settings.consumer_group``) reading ``topics``
    (default ``[settings.topic]``; pass ``[settings.dlq_topic]`` to read dead letters)."""
    url = parse_queue_url(settings.queue_url)
    group = group or settings.consumer_group
    topics = list(topics) if topics else [settings.topic]
    if url.scheme == "kafka":
        from llmtap.queue.kafka_admin import client_config, ensure_topics
        from llmtap.queue.kafka_consumer import KafkaConsumer

        ensure_topics(url, topics, settings.partitions)
        return KafkaConsumer(
            client_config(url), group, topics, commit_timeout_s=settings.commit_timeout_s
        )
    from llmtap.queue.sqlite import SqliteConsumer

    return SqliteConsumer(
        Path(url.location),
        group,
        topics,
        settings.partitions,
        busy_timeout_ms=int(url.number("busy_timeout_ms", 5000)),
        lease_s=url.number("lease_s", 30.0),
        poll_interval_s=url.number("poll_interval_ms", 20.0) / 1000,
        retention_ms=_retention(url),
    )


def _retention(url: QueueUrl) -> int | None:
    retention = int(url.number("retention_ms", WEEK_MS))
    return None if retention < 0 else retention


def _kafka_producer(url: QueueUrl, settings: Settings) -> ReportingProducer:
    from llmtap.queue.kafka_admin import client_config, ensure_topics
    from llmtap.queue.kafka_producer import KafkaProducer

    try:
        ensure_topics(url, [settings.topic, settings.dlq_topic], settings.partitions)
    except QueueError as exc:
        # The proxy must start even when the broker is down: records spool until it is back.
        log.warning("could not check the queue's topics (%s); producing anyway", exc)
    return KafkaProducer(client_config(url))
