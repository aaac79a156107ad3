"""Kafka-only behaviour of the queue adapter, against the broker of scripts/services/kafka.sh.

The shared behaviour (publish, commit, redelivery, seek, DLQ, order) is in
tests/contract/test_queue_contract.py; here: what happens when Kafka cannot take or deliver a
message, rebalances, and topic creation. "Broker down" is a port nothing listens on, so the shared
broker other tests use is never stopped.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from llmtap.errors import QueueError
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.kafka_admin import client_config
from llmtap.queue.kafka_producer import KafkaProducer
from llmtap.queue.port import GroupConsumer, Message, PublishIncomplete
from llmtap.queue.spool import Spool
from llmtap.queue.urls import parse_queue_url
from llmtap.settings import Settings
from support.kafka_topics import kafka_settings
from support.probes import wait_for

pytestmark = pytest.mark.kafka


def poll_until(consumer: GroupConsumer, into: list[Message], count: int) -> None:
    def enough() -> bool:
        into.extend(consumer.poll_batch(count, 0.5))
        return len(into) >= count

    wait_for(enough)


@pytest.fixture
def dead_broker() -> str:
    """``host:port`` where no broker listens (a port just released by the OS)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return kafka_settings(kafka_bootstrap, tmp_path, "kt", partitions=3)


@pytest.fixture
def consumers() -> Iterator[list[GroupConsumer]]:
    opened: list[GroupConsumer] = []
    yield opened
    for consumer in opened:
        consumer.close()


def test_a_full_local_queue_fails_fast_so_the_caller_can_spool(dead_broker: str) -> None:
    url = parse_queue_url(f"kafka://{dead_broker}?queue_buffering_max_messages=3")
    producer = KafkaProducer(client_config(url))
    try:
        for i in range(3):
            producer.publish("t", f"k{i}".encode(), b"v")
        started = time.monotonic()
        with pytest.raises(QueueError, match="local queue is full") as info:
            producer.publish("t", b"k3", b"v")
        assert time.monotonic() - started < 0.5
        assert info.value.retriable
    finally:
        producer.close(timeout_s=0)

    producer = KafkaProducer(client_config(url))
    try:
        with pytest.raises(PublishIncomplete) as partial:
            producer.publish_batch("t", [(f"k{i}".encode(), b"v") for i in range(5)])
        assert partial.value.accepted == 3
    finally:
        producer.close(timeout_s=0)


def test_undelivered_messages_come_back_and_reach_kafka_through_the_spool(
    dead_broker: str, settings: Settings, tmp_path: Path, consumers: list[GroupConsumer]
) -> None:
    url = parse_queue_url(f"kafka://{dead_broker}?delivery_timeout_ms=300")
    unreachable = KafkaProducer(client_config(url))
    records = [(f"req-{i}".encode(), f"record-{i}".encode()) for i in range(5)]
    unreachable.publish_batch(settings.topic, records)
    failed: list[tuple[str, bytes | None, bytes]] = []

    def all_failed() -> bool:
        failed.extend(unreachable.take_failed())
        return len(failed) == 5

    wait_for(all_failed)
    unreachable.close(timeout_s=0)
    assert sorted(failed) == sorted((settings.topic, k, v) for k, v in records)

    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    assert spool.append_many(failed) == 5
    producer = open_producer(settings)  # the broker is back
    try:
        assert spool.replay(producer) == 5
    finally:
        producer.close()
        spool.close()

    consumer = open_consumer(settings)
    consumers.append(consumer)
    got: list[Message] = []
    poll_until(consumer, got, 5)
    assert sorted((m.key, m.value) for m in got) == sorted(records)


def test_the_revoke_hook_commits_before_partitions_move_to_a_new_member(
    settings: Settings, consumers: list[GroupConsumer]
) -> None:
    producer = open_producer(settings)
    producer.publish_batch(settings.topic, [(f"id-{i}".encode(), b"v") for i in range(30)])
    assert producer.flush(30) == 0
    producer.close()

    first = open_consumer(settings)
    consumers.append(first)
    processed: list[Message] = []
    revoked: list[tuple[str, int]] = []

    def commit_what_was_processed(partitions: Sequence[tuple[str, int]]) -> None:
        revoked.extend(partitions)
        first.commit(processed)

    first.set_on_revoke(commit_what_was_processed)
    poll_until(first, processed, 30)

    second = open_consumer(settings)
    consumers.append(second)
    duplicates: list[Message] = []

    def rebalanced() -> bool:
        # both members must keep polling for the group to rebalance
        duplicates.extend(second.poll_batch(30, 0.2))
        duplicates.extend(first.poll_batch(30, 0.2))
        return bool(revoked) and bool(second.lag())

    wait_for(rebalanced)
    assert {p for _, p in revoked} == {0, 1, 2}
    assert duplicates == []  # nothing the first member processed is delivered again
    assert sum(second.lag().values()) == 0


def test_missing_topics_are_created_with_the_configured_partitions_and_retention(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = settings.model_copy(
        update={"queue_url": f"kafka://{kafka_bootstrap}?retention_ms=3600000", "partitions": 2}
    )
    producer = open_producer(settings)
    producer.close()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    for name in (settings.topic, settings.dlq_topic):
        assert len(topics[name].partitions) == 2
        resource = ConfigResource("topic", name)
        [future] = admin.describe_configs([resource]).values()
        assert future.result()["retention.ms"].value == "3600000"


def test_url_query_becomes_client_settings_except_topic_options() -> None:
    url = parse_queue_url(
        "kafka://b1:9092,b2:9092?security_protocol=SASL_SSL&sasl_mechanism=PLAIN"
        "&sasl_username=user&sasl_password=p%40ss&retention_ms=1000&replication_factor=3"
    )
    assert client_config(url) == {
        "bootstrap.servers": "b1:9092,b2:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "user",
        "sasl.password": "p@ss",
    }
