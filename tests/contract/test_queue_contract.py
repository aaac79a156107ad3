"""What every queue adapter promises, run against each one through the factory."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.port import Consumer, GroupConsumer, Message, ReportingProducer
from llmtap.settings import Settings
from support.kafka_topics import kafka_settings
from support.probes import wait_for

PARTITIONS = 3
WAIT_S = 30.0  # generous: a Kafka consumer's first poll includes joining its group


class QueueUnderTest:
    """Opens producers and consumers of one adapter and closes them after the test."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.topic = settings.topic
        self.dlq_topic = settings.dlq_topic
        self.partitions = settings.partitions
        self._open: list[ReportingProducer | GroupConsumer] = []

    def producer(self) -> ReportingProducer:
        producer = open_producer(self.settings)
        self._open.append(producer)
        return producer

    def consumer(self, group: str = "group", topics: Sequence[str] | None = None) -> GroupConsumer:
        consumer = open_consumer(self.settings, f"{self.settings.consumer_group}-{group}", topics)
        self._open.append(consumer)
        return consumer

    def close(self) -> None:
        for thing in reversed(self._open):
            thing.close()


@pytest.fixture(params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueUnderTest]:
    """Each adapter behind the factory; Kafka gets fresh topic and group names per test (and is
    skipped, or failed under CI, by tests/conftest.py when no broker answers)."""
    if request.param == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        settings = kafka_settings(bootstrap, tmp_path, "test", partitions=PARTITIONS)
    else:
        settings = Settings(data_dir=tmp_path, partitions=PARTITIONS, consumer_group="test")
    under_test = QueueUnderTest(request.param, settings)
    yield under_test
    under_test.close()


def drain(consumer: Consumer, count: int, timeout_s: float = WAIT_S) -> list[Message]:
    """Poll until ``count`` messages arrived; fail after ``timeout_s``."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"got {len(got)} of {count} messages"
        got += consumer.poll_batch(count - len(got), 0.5)
    assert len(got) == count
    return got


def nothing_more(consumer: Consumer, within_s: float = 1.0) -> bool:
    return consumer.poll_batch(100, within_s) == []


def publish_flushed(queue: QueueUnderTest, items: list[tuple[bytes | None, bytes]]) -> None:
    producer = queue.producer()
    producer.publish_batch(queue.topic, items)
    assert producer.flush(WAIT_S) == 0
    assert producer.take_failed() == []


def test_published_messages_arrive_with_key_value_and_headers(queue: QueueUnderTest) -> None:
    producer = queue.producer()
    producer.publish(queue.topic, b"req-1", b'{"a": 1}', {"origin": b"proxy"})
    producer.publish(queue.topic, None, b"keyless")
    assert producer.flush(WAIT_S) == 0

    got = drain(queue.consumer(), 2)
    by_value = {m.value: m for m in got}
    assert by_value[b'{"a": 1}'].key == b"req-1"
    assert by_value[b'{"a": 1}'].headers == {"origin": b"proxy"}
    assert by_value[b"keyless"].key is None
    assert all(m.topic == queue.topic and m.timestamp_ms > 0 for m in got)


def test_uncommitted_messages_are_redelivered_after_reopen(queue: QueueUnderTest) -> None:
    publish_flushed(queue, [(b"one-key", f"m{i}".encode()) for i in range(6)])
    first = queue.consumer()
    got = drain(first, 6)
    assert [m.value for m in got] == [f"m{i}".encode() for i in range(6)]
    first.commit(got[:3])
    first.close()

    second = queue.consumer()
    again = drain(second, 3)
    assert [m.value for m in again] == [b"m3", b"m4", b"m5"]
    assert [m.offset for m in again] == [m.offset for m in got[3:]]
    assert nothing_more(second)


def test_a_restarted_consumer_resumes_after_its_committed_offset(queue: QueueUnderTest) -> None:
    publish_flushed(queue, [(f"k{i}".encode(), f"old{i}".encode()) for i in range(5)])
    first = queue.consumer()
    first.commit(drain(first, 5))
    first.close()

    publish_flushed(queue, [(f"k{i}".encode(), f"new{i}".encode()) for i in range(3)])
    second = queue.consumer()
    assert sorted(m.value for m in drain(second, 3)) == [b"new0", b"new1", b"new2"]
    assert nothing_more(second)


def test_seek_replays_from_any_offset(queue: QueueUnderTest) -> None:
    publish_flushed(queue, [(b"one-key", f"m{i}".encode()) for i in range(5)])
    consumer = queue.consumer()
    got = drain(consumer, 5)
    consumer.commit(got)
    partition, first_offset = got[0].partition, got[0].offset

    consumer.seek(partition, first_offset, queue.topic)
    assert [m.value for m in drain(consumer, 5)] == [f"m{i}".encode() for i in range(5)]
    consumer.seek(partition, first_offset + 3)  # one topic: it may be left out
    assert [m.value for m in drain(consumer, 2)] == [b"m3", b"m4"]
    assert nothing_more(consumer)


def test_seek_to_zero_everywhere_replays_all_partitions(queue: QueueUnderTest) -> None:
    items: list[tuple[bytes | None, bytes]] = [(f"id-{i}".encode(), b"v") for i in range(30)]
    publish_flushed(queue, items)
    consumer = queue.consumer()
    consumer.commit(drain(consumer, 30))
    for partition in range(queue.partitions):
        consumer.seek(partition, 0)
    assert sorted(m.key or b"" for m in drain(consumer, 30)) == sorted(k or b"" for k, _ in items)


def test_seek_to_time_replays_from_that_moment(queue: QueueUnderTest) -> None:
    publish_flushed(queue, [(b"a", b"before-1"), (b"b", b"before-2")])
    consumer = queue.consumer()
    old = drain(consumer, 2)
    consumer.commit(old)
    boundary = max(m.timestamp_ms for m in old) + 1
    wait_for(lambda: time.time_ns() // 1_000_000 > boundary)
    publish_flushed(queue, [(b"c", b"after-1"), (b"d", b"after-2")])
    consumer.commit(drain(consumer, 2))

    consumer.seek_to_time(boundary)
    assert sorted(m.value for m in drain(consumer, 2)) == [b"after-1", b"after-2"]
    assert nothing_more(consumer)


def test_dead_letters_live_in_their_own_topic(queue: QueueUnderTest) -> None:
    producer = queue.producer()
    producer.publish(queue.topic, b"ok", b"fine")
    producer.publish(
        queue.dlq_topic, b"bad", b"\x00original bytes", {"error": b"boom", "attempts": b"3"}
    )
    assert producer.flush(WAIT_S) == 0

    main = queue.consumer("main")
    assert [m.value for m in drain(main, 1)] == [b"fine"]
    assert nothing_more(main)
    dead = queue.consumer("dlq", [queue.dlq_topic])
    [letter] = drain(dead, 1)
    assert (letter.topic, letter.key, letter.value) == (
        queue.dlq_topic,
        b"bad",
        b"\x00original bytes",
    )
    assert letter.headers == {"error": b"boom", "attempts": b"3"}


def test_order_is_kept_per_key(queue: QueueUnderTest) -> None:
    keys = [f"key-{k}".encode() for k in range(5)]
    publish_flushed(queue, [(keys[i % 5], str(i).encode()) for i in range(100)])
    got = drain(queue.consumer(), 100)
    for key in keys:
        mine = [m for m in got if m.key == key]
        assert [int(m.value) for m in mine] == sorted(int(m.value) for m in mine)
        assert len({m.partition for m in mine}) == 1
        assert [m.offset for m in mine] == sorted(m.offset for m in mine)


def test_keys_spread_over_all_partitions(queue: QueueUnderTest) -> None:
    publish_flushed(queue, [(f"request-{i}".encode(), b"v") for i in range(200)])
    got = drain(queue.consumer(), 200)
    assert {m.partition for m in got} == set(range(queue.partitions))
    for partition in range(queue.partitions):
        offsets = sorted(m.offset for m in got if m.partition == partition)
        assert len(set(offsets)) == len(offsets)


def test_groups_read_independently(queue: QueueUnderTest) -> None:
    publish_flushed(queue, [(f"k{i}".encode(), b"v") for i in range(10)])
    records = queue.consumer("records")
    records.commit(drain(records, 10))
    analytics = queue.consumer("analytics")
    assert len(drain(analytics, 10)) == 10  # the other group's commits do not move this one


def test_lag_counts_what_the_group_has_not_committed(queue: QueueUnderTest) -> None:
    publish_flushed(queue, [(b"one-key", b"v")] * 8)
    consumer = queue.consumer()
    got = drain(consumer, 8)
    consumer.commit(got[:5])
    wait_for(lambda: sum(consumer.lag().values()) == 3)
    assert set(consumer.lag()) == {(queue.topic, p) for p in range(queue.partitions)}
    consumer.commit(got)
    wait_for(lambda: sum(consumer.lag().values()) == 0)


def test_a_key_lands_on_the_same_partition_in_every_adapter(queue: QueueUnderTest) -> None:
    # crc32(key) % partitions, librdkafka's default: moving between adapters keeps key placement
    publish_flushed(queue, [(f"req-{i}".encode(), b"v") for i in range(40)])
    got = drain(queue.consumer(), 40)
    assert all(m.partition == zlib.crc32(m.key or b"") % queue.partitions for m in got)
