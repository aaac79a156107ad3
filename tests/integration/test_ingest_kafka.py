"""The ingestion publisher on Kafka: a log is acknowledged only once the broker confirmed it, and
a broker that cannot take it makes the endpoint refuse (503) instead of losing it."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.ingest.built import Body, Ingested
from llmtap.ingest.publisher import IngestPublisher, IngestUnavailable
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.kafka_admin import client_config
from llmtap.queue.kafka_producer import KafkaProducer
from llmtap.queue.port import Message
from llmtap.queue.urls import parse_queue_url
from llmtap.record import BodyRef, LogRecord, Timing, decode
from llmtap.stores.bodies.port import BodyStore, body_key
from llmtap.stores.factory import open_body_store
from support.kafka_topics import kafka_settings


def ingested(org: str = "org-1") -> Ingested:
    request_id = str(uuid.uuid4())
    key = body_key(org, request_id, "request")
    record = LogRecord(
        request_id=request_id,
        source="async-log",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        status=200,
        timing=Timing(start_unix_ms=time.time() * 1000, total_ms=12.0),
        org_id=org,
        request_body=BodyRef(key=key, size=2),
    )
    return Ingested(record, [Body(key, b"{}", "application/json")])


@pytest.fixture
def bodies(tmp_path: Path) -> Iterator[BodyStore]:
    store = open_body_store(f"file://{tmp_path / 'bodies'}")
    yield store
    store.close()


def test_a_broker_that_cannot_take_the_log_is_refused_not_acknowledged(
    bodies: BodyStore,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    url = parse_queue_url(f"kafka://{dead}?delivery_timeout_ms=300")
    publisher = IngestPublisher(KafkaProducer(client_config(url)), bodies, "t", flush_timeout_s=5)
    started = time.monotonic()
    with pytest.raises(IngestUnavailable, match="queue did not confirm"):
        publisher.publish([ingested()])
    assert time.monotonic() - started < 5
    assert (publisher.published, publisher.refused) == (0, 1)


@pytest.mark.kafka
def test_an_acknowledged_log_is_in_kafka(
    kafka_bootstrap: str, bodies: BodyStore, tmp_path: Path
) -> None:
    settings = kafka_settings(kafka_bootstrap, tmp_path, "ingest")
    publisher = IngestPublisher(open_producer(settings), bodies, settings.topic)
    logs = [ingested(), ingested()]
    publisher.publish(logs)
    publisher.close()
    consumer = open_consumer(settings)
    try:
        got: list[Message] = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got.extend(consumer.poll_batch(10, 0.5))
    finally:
        consumer.close()
    assert sorted(decode(m.value).request_id for m in got) == sorted(
        i.record.request_id for i in logs
    )
