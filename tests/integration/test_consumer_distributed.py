"""The consumer service on the distributed adapters: Kafka, Postgres and an S3-compatible server.

Every test gets its own topics, consumer group, Postgres schema and bucket, so runs never collide.
The Postgres outage is real: the records store talks to Postgres through a TCP relay the test
cuts and restores, as a database restart or a network partition would.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from llmtap.consumer.dlq import decode_dead_letter
from llmtap.consumer.service import ConsumerService
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.port import Message
from llmtap.record import BodyRef, LogRecord, Timing, encode
from llmtap.settings import Settings
from llmtap.stores.bodies.port import body_key
from llmtap.stores.factory import open_body_store, open_records_store
from support.probes import wait_for
from support.relay import TcpRelay

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.s3]


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    schema = f"t_{secrets.token_hex(6)}"
    url = make_url(postgres_url)
    admin = psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


@pytest.fixture
def relay(postgres_url: str) -> Iterator[TcpRelay]:
    url = make_url(postgres_url)
    relay = TcpRelay((url.host or "127.0.0.1", url.port or 5432))
    relay.start()
    yield relay
    relay.cut()


@pytest.fixture
def settings(
    tmp_path: Path,
    kafka_bootstrap: str,
    postgres_url: str,
    s3_endpoint: str,
    pg_schema: str,
    relay: TcpRelay,
) -> Settings:
    unique = secrets.token_hex(5)
    records = make_url(postgres_url).set(host="127.0.0.1", port=relay.port)
    records = records.update_query_dict({"options": f"-csearch_path={pg_schema}"})
    return Settings(
        data_dir=tmp_path,
        queue_url=f"kafka://{kafka_bootstrap}",
        records_url=records.render_as_string(hide_password=False),
        bodies_url=f"s3://llmtap-test-{unique}?endpoint={s3_endpoint}&region=us-east-1",
        topic=f"test-logs-{unique}",
        dlq_topic=f"test-dlq-{unique}",
        consumer_group=f"test-consumer-{unique}",
        partitions=2,
        batch_max_wait_s=0.1,
        retry_backoff_s=0.05,
        retry_backoff_max_s=0.5,
        max_attempts=1,
    )


def publish_calls(settings: Settings, ids: list[str], *, junk: bytes | None = None) -> None:
    """Write each call's bodies, then its record, as the proxy does."""
    bodies = open_body_store(settings.bodies_url)
    producer = open_producer(settings)
    try:
        for request_id in ids:
            request_key = body_key(None, request_id, "request")
            bodies.put(request_key, json.dumps({"model": "claude-3-5-haiku-latest"}).encode())
            response_key = body_key(None, request_id, "response")
            bodies.put(response_key, _messages_response(request_id))
            record = LogRecord(
                request_id=request_id,
                source="proxy",
                provider="anthropic",
                method="POST",
                target_url="https://api.anthropic.com/v1/messages",
                status=200,
                timing=Timing(start_unix_ms=time.time() * 1000, total_ms=42.0),
                request_body=BodyRef(key=request_key, size=40),
                response_body=BodyRef(key=response_key, size=300),
                response_headers={"content-type": "application/json"},
            )
            producer.publish(settings.topic, request_id.encode(), encode(record))
        if junk is not None:
            producer.publish(settings.topic, b"junk", junk)
        assert producer.flush(10.0) == 0
        assert producer.take_failed() == []
    finally:
        producer.close()
        bodies.close()


def _messages_response(request_id: str) -> bytes:
    return json.dumps(
        {
            "id": f"msg_{request_id}",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": "hello"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 100, "output_tokens": 20},
        }
    ).encode()


def count_rows(settings: Settings) -> int:
    records = open_records_store(settings.records_url)
    try:
        return records.count_requests(None)
    finally:
        records.close()


def test_service_on_kafka_postgres_and_s3(settings: Settings) -> None:
    publish_calls(settings, [f"k-{i}" for i in range(20)], junk=b"not a record")
    service = ConsumerService(settings)
    service.start()
    try:
        wait_for(lambda: service.processed == 20 and service.dead_lettered == 1)
    finally:
        assert service.stop(timeout=30)
    assert service.failure is None
    assert count_rows(settings) == 20

    records = open_records_store(settings.records_url)
    row = records.get_request(None, "k-7")
    records.close()
    assert row is not None and row.endpoint == "messages"
    assert (row.input_tokens, row.output_tokens) == (100, 20)

    consumer = open_consumer(settings)
    try:
        assert sum(consumer.lag().values()) == 0
    finally:
        consumer.close()
    dlq = open_consumer(
        settings, group=f"{settings.consumer_group}-inspect", topics=[settings.dlq_topic]
    )
    try:
        messages: list[Message] = []
        deadline = time.monotonic() + 60
        while not messages and time.monotonic() < deadline:
            messages = dlq.poll_batch(10, 0.5)
    finally:
        dlq.close()
    (letter,) = [decode_dead_letter(m.value) for m in messages]
    assert letter.original == b"not a record" and letter.error_type == "RecordDecodeError"
    assert letter.topic == settings.topic


def test_a_postgres_outage_holds_the_batch_and_loses_nothing(
    settings: Settings, relay: TcpRelay
) -> None:
    service = ConsumerService(settings)
    service.start()
    try:
        publish_calls(settings, [f"before-{i}" for i in range(5)])
        wait_for(lambda: service.processed == 5)
        relay.cut()
        publish_calls(settings, [f"during-{i}" for i in range(5)])
        wait_for(lambda: service.stats.stalls >= 3)
        assert service.processed == 5 and service.dead_lettered == 0
        relay.start()  # the database is back on the same address
        wait_for(lambda: service.processed == 10)
    finally:
        assert service.stop(timeout=30)
    assert service.dead_lettered == 0 and service.failure is None
    assert count_rows(settings) == 10
