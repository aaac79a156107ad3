"""A backlog spread over partitions comes back to one consumer with the partitions interleaved.

The distributed consumer reads bodies from packs: one pack holds the bodies of one proxy batch,
whose records are spread over every partition (keyed by request id). When librdkafka handed out a
backlog one partition's run after another, the last partition reached a pack long after its
window had left the body store's cache, and each pack was fetched about once per partition
(docs/consumer.md, "Capacity"). The consumer caps what one fetch takes from a partition so that
every partition advances together.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.port import GroupConsumer
from llmtap.settings import Settings
from support.kafka_topics import kafka_settings
from support.probes import wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
PER_PARTITION = 1_500
RECORD_BYTES = 600  # about a record's size: its bodies are in the body store, not in Kafka


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return kafka_settings(kafka_bootstrap, tmp_path, "ki", partitions=PARTITIONS)


@pytest.fixture
def consumer(settings: Settings) -> Iterator[GroupConsumer]:
    opened = open_consumer(settings)
    yield opened
    opened.close()


def fill_backlog(settings: Settings) -> int:
    # small producer batches, as the proxy's shipper sends at a steady load (a fetch returns at
    # least one whole producer batch, whatever its size)
    producer = open_producer(
        settings.model_copy(
            update={"queue_url": f"{settings.queue_url}?batch_size=16384&linger_ms=1"}
        )
    )
    try:
        total = PER_PARTITION * PARTITIONS
        for start in range(0, total, 500):
            # random bytes: the producer compresses, and a fetch counts compressed bytes
            items = [
                (f"req-{i}".encode(), os.urandom(RECORD_BYTES)) for i in range(start, start + 500)
            ]
            producer.publish_batch(settings.topic, items)
        assert producer.flush(30) == 0
        assert producer.take_failed() == []
    finally:
        producer.close()
    return total


def test_every_partition_is_reached_early_in_a_backlog(
    settings: Settings, consumer: GroupConsumer
) -> None:
    total = fill_backlog(settings)
    seen: set[int] = set()
    read = 0
    read_when_all_seen: int | None = None

    def all_partitions_seen() -> bool:
        nonlocal read, read_when_all_seen
        for message in consumer.poll_batch(200, 0.5):
            read += 1
            seen.add(message.partition)
            if len(seen) == PARTITIONS and read_when_all_seen is None:
                read_when_all_seen = read
        return read_when_all_seen is not None or read >= total

    wait_for(all_partitions_seen, timeout_s=30)
    assert read_when_all_seen is not None, f"only partitions {sorted(seen)} in {read} records"
    # one partition after another would reach the last one after three quarters of the backlog
    assert read_when_all_seen <= total // 4, (read_when_all_seen, total)
