"""A Kafka outage as the proxy's operator sees it: counters that only go up, and a few log lines
(one per state change) instead of one per connection attempt and per record.

The proxy runs in-process with a real ``KafkaProducer`` whose bootstrap address is a TCP relay in
front of the shared test broker: the relay is closed at first (the broker is "down", connections
are refused) and opened later (the broker is back on the same address).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import openai
import pytest

from llmtap.errors import QueueError, StoreError
from llmtap.proxy.metrics import _GAUGES, ProxyMetrics
from llmtap.proxy.server import ThreadedProxy
from llmtap.proxy.shipper import Lazy, Shipper
from llmtap.queue.kafka_admin import ensure_topics
from llmtap.queue.kafka_producer import KafkaProducer
from llmtap.queue.port import ReportingProducer
from llmtap.queue.spool import Spool
from llmtap.queue.urls import parse_queue_url
from llmtap.settings import Settings
from llmtap.stores.bodies.file import FileBodyStore
from llmtap.stores.bodies.port import BodyStore
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import wait_for
from support.processes import free_port
from support.relay import TcpRelay

PROMPT: Any = [{"role": "user", "content": "hello"}]
BROKER = os.environ.get("LLMTAP_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def shipper_for(
    settings: Settings,
    producer: Lazy[ReportingProducer],
    metrics: ProxyMetrics,
    *,
    max_backlog: int = 100_000,
) -> Shipper:
    bodies: Lazy[BodyStore] = Lazy(
        lambda: FileBodyStore(settings.data_dir / "bodies"), StoreError, "body store"
    )
    return Shipper(
        producer=producer,
        bodies=bodies,
        spool=Spool.claim(settings.spool_dir, settings.spool_max_bytes),
        keys=None,
        metrics=metrics,
        topic=settings.topic,
        max_decoded_bytes=settings.max_capture_bytes,
        max_backlog=max_backlog,
    )


def counters(metrics: ProxyMetrics) -> dict[str, int]:
    return {k: v for k, v in asdict(metrics).items() if k not in _GAUGES}


def test_a_kafka_outage_logs_state_changes_and_counters_never_go_down(
    tmp_path: Path, mock: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"outage-{uuid.uuid4().hex[:10]}"
    ensure_topics(parse_queue_url(f"kafka://{BROKER}"), [topic], 1)
    host, port = BROKER.rsplit(":", 1)
    relay = TcpRelay((host, int(port)))
    relay.port = free_port()  # reserved, not listening yet: the broker is down
    settings = Settings(
        data_dir=tmp_path / "data", proxy_port=0, openai_base_url=mock.url, topic=topic
    )
    config = {
        "bootstrap.servers": f"127.0.0.1:{relay.port}",
        "delivery.timeout.ms": 1500,
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 200,
    }
    producer: Lazy[ReportingProducer] = Lazy(lambda: KafkaProducer(config), QueueError, "queue")
    samples: list[dict[str, int]] = []
    caplog.set_level(logging.INFO, logger="llmtap")
    proxy = ThreadedProxy(settings)
    proxy._server._shipper = shipper_for(settings, producer, proxy.metrics)

    def sampled(done: bool) -> bool:
        samples.append(counters(proxy.metrics))
        return done

    with proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-x", max_retries=0)
        for _ in range(5):
            assert client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT).choices
        # accepted by the producer, then undelivered after delivery.timeout.ms: spooled
        wait_for(lambda: sampled(proxy.metrics.records_published == 5), what="5 published")
        wait_for(
            lambda: sampled(proxy.metrics.records_spooled >= 5), timeout_s=20, what="5 spooled"
        )
        down_lines = [r for r in caplog.records if r.levelno >= logging.INFO]

        relay.start()  # the broker is back
        try:
            wait_for(
                lambda: sampled(
                    proxy.metrics.spool_replayed >= 5 and proxy.metrics.spool_pending == 0
                ),
                timeout_s=30,
                what="the spool replayed into Kafka",
            )
        finally:
            relay.cut()
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]

    for before, after in itertools.pairwise(samples):
        went_down = [k for k in before if after[k] < before[k]]
        assert went_down == [], f"counters went down: {went_down} ({before} -> {after})"
    assert proxy.metrics.records_published >= 5
    assert proxy.metrics.delivery_failures >= 5
    assert proxy.metrics.records_dropped == 0
    # down: "kafka unreachable" + "queue unreachable, spooling", not one line per attempt
    assert len(down_lines) <= 3, [r.getMessage() for r in down_lines]
    assert any("kafka unreachable" in m for m in messages)
    assert any("queue reachable again" in m and "spooled during the outage" in m for m in messages)
    assert len(messages) <= 6, messages


def test_records_dropped_counts_every_drop_from_two_threads(tmp_path: Path) -> None:
    """Regression guard: a lost update under contention is probabilistic, not guaranteed."""
    settings = Settings(data_dir=tmp_path / "data")
    never: Lazy[ReportingProducer] = Lazy(lambda: KafkaProducer({}), QueueError, "queue")
    metrics = ProxyMetrics()
    # every hand-off is over the backlog: dropped and counted
    shipper = shipper_for(settings, never, metrics, max_backlog=0)
    n = 50_000
    start = threading.Barrier(2)

    def drop_n() -> None:
        start.wait()
        for _ in range(n):
            shipper.submit(None)  # type: ignore[arg-type]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=drop_n) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert metrics.records_dropped == 2 * n
