"""The embedded queue on a real SQLite file, with real extra processes where it matters."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.errors import ConfigError, QueueError
from llmtap.queue._sqlite_db import INSERT_SIZES
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.port import Message
from llmtap.queue.sqlite import SqliteConsumer, SqliteProducer
from llmtap.settings import Settings
from support.probes import wait_for

TOPIC = "logs"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def producer(db: Path) -> Iterator[SqliteProducer]:
    p = SqliteProducer(db, partitions=3)
    yield p
    p.close()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def drain(consumer: SqliteConsumer, count: int, timeout_s: float = 10.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll_batch(count - len(got), 0.2)
    return got


def test_publishers_in_several_processes_get_unique_gap_free_offsets(db: Path) -> None:
    code = f"""
from pathlib import Path
from llmtap.queue.sqlite import SqliteProducer
p = SqliteProducer(Path({str(db)!r}), partitions=3)
for i in range(40):
    p.publish_batch({TOPIC!r}, [(f"k{{i}}-{{j}}".encode(), b"v") for j in range(5)])
p.close()
"""
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0]

    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=3)
    got = drain(consumer, 600)
    consumer.close()
    assert len(got) == 600
    for part in range(3):
        offsets = [m.offset for m in got if m.partition == part]
        assert offsets == list(range(len(offsets)))


def test_publish_is_on_disk_when_it_returns(db: Path) -> None:
    # The publishing process dies right after publish returns, without closing anything.
    result = run_python(
        f"import os\nfrom pathlib import Path\nfrom llmtap.queue.sqlite import SqliteProducer\n"
        f"SqliteProducer(Path({str(db)!r}), 2).publish({TOPIC!r}, b'id-1', b'payload')\n"
        f"os._exit(0)"
    )
    assert result.returncode == 0, result.stderr
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=2)
    [message] = drain(consumer, 1)
    consumer.close()
    assert (message.key, message.value) == (b"id-1", b"payload")


def test_headers_and_keys_round_trip(producer: SqliteProducer, db: Path) -> None:
    producer.publish(TOPIC, None, b"no key", {"error": b"boom", "attempts": b"3"})
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=3)
    [message] = drain(consumer, 1)
    consumer.close()
    assert message.key is None
    assert message.headers == {"error": b"boom", "attempts": b"3"}


def test_poll_returns_as_soon_as_a_message_arrives(producer: SqliteProducer, db: Path) -> None:
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=3)
    started = time.monotonic()
    assert consumer.poll_batch(10, 0.3) == []
    assert time.monotonic() - started >= 0.3

    timer = threading.Timer(0.2, producer.publish, args=(TOPIC, b"k", b"late"))
    timer.start()
    started = time.monotonic()
    got = consumer.poll_batch(10, 10.0)
    elapsed = time.monotonic() - started
    timer.join()
    consumer.close()
    assert [m.value for m in got] == [b"late"]
    assert elapsed < 5.0


def test_a_second_member_of_a_group_is_refused(producer: SqliteProducer, db: Path) -> None:
    first = SqliteConsumer(db, "g", [TOPIC], partitions=3)
    with pytest.raises(QueueError, match="one consumer per group") as info:
        SqliteConsumer(db, "g", [TOPIC], partitions=3)
    assert info.value.retriable is False
    other_group = SqliteConsumer(db, "other", [TOPIC], partitions=3)
    other_group.close()
    first.close()
    SqliteConsumer(db, "g", [TOPIC], partitions=3).close()  # free again after close


def test_a_crashed_members_group_is_taken_over_at_once(db: Path) -> None:
    result = run_python(
        f"import os\nfrom pathlib import Path\nfrom llmtap.queue.sqlite import SqliteConsumer\n"
        f"SqliteConsumer(Path({str(db)!r}), 'g', [{TOPIC!r}], 2, lease_s=3600)\nos._exit(0)"
    )
    assert result.returncode == 0, result.stderr
    SqliteConsumer(db, "g", [TOPIC], partitions=2).close()


def test_a_stalled_member_that_lost_its_lease_cannot_commit(
    producer: SqliteProducer, db: Path
) -> None:
    producer.publish(TOPIC, b"k", b"v")
    stalled = SqliteConsumer(db, "g", [TOPIC], partitions=3, lease_s=0.2)
    batch = drain(stalled, 1)

    replacement: list[SqliteConsumer] = []

    def take_over() -> bool:
        try:
            replacement.append(SqliteConsumer(db, "g", [TOPIC], partitions=3))
        except QueueError:
            return False
        return True

    wait_for(take_over)
    with pytest.raises(QueueError, match="active member"):
        stalled.commit(batch)
    # the new member still sees the message: the stalled one's progress was not recorded
    assert [m.value for m in drain(replacement[0], 1)] == [b"v"]
    replacement[0].close()
    stalled.close()


def test_seek_to_time_replays_from_that_moment(producer: SqliteProducer, db: Path) -> None:
    producer.publish_batch(TOPIC, [(b"a", b"old-1"), (b"b", b"old-2")])
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=3)
    consumer.commit(drain(consumer, 2))
    boundary = time.time_ns() // 1_000_000 + 1
    wait_for(lambda: time.time_ns() // 1_000_000 >= boundary)
    producer.publish_batch(TOPIC, [(b"c", b"new-1"), (b"d", b"new-2")])
    consumer.commit(drain(consumer, 2))

    consumer.seek_to_time(boundary)
    assert sorted(m.value for m in drain(consumer, 2)) == [b"new-1", b"new-2"]
    consumer.seek_to_time(0)
    assert len(drain(consumer, 4)) == 4
    consumer.close()


def test_lag_counts_what_the_group_has_not_committed(producer: SqliteProducer, db: Path) -> None:
    producer.publish_batch(TOPIC, [(f"k{i}".encode(), b"v") for i in range(10)])
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=3)
    assert sum(consumer.lag().values()) == 10
    batch = drain(consumer, 10)
    consumer.commit(batch[:4])
    lag = consumer.lag()
    assert set(lag) == {(TOPIC, 0), (TOPIC, 1), (TOPIC, 2)}
    committed = {(m.partition) for m in batch[:4]}
    for part in committed:
        last = max(m.offset for m in batch[:4] if m.partition == part)
        end = max(m.offset for m in batch if m.partition == part) + 1
        assert lag[(TOPIC, part)] == end - last - 1
    consumer.commit(batch)
    assert sum(consumer.lag().values()) == 0
    consumer.close()


def test_prune_deletes_only_old_messages_every_group_has_committed(
    producer: SqliteProducer, db: Path
) -> None:
    producer.publish_batch(TOPIC, [(b"same-key", f"m{i}".encode()) for i in range(10)])
    producer.publish_batch("dlq", [(b"k", b"dead letter")])
    fast = SqliteConsumer(db, "fast", [TOPIC], partitions=3)
    slow = SqliteConsumer(db, "slow", [TOPIC], partitions=3)
    fast.commit(drain(fast, 10))
    slow.commit(drain(slow, 4))

    assert fast.prune(retention_ms=3_600_000) == 0  # consumed but not old enough
    assert fast.prune(retention_ms=0) == 4  # only what the slow group has committed
    slow.close()

    replay = SqliteConsumer(db, "replay", [TOPIC], partitions=3)
    assert [m.value for m in drain(replay, 6)] == [f"m{i}".encode() for i in range(4, 10)]
    assert replay.poll_batch(10, 0.2) == []
    replay.close()
    # nobody reads the dead-letter topic yet: it is kept whole
    dlq = SqliteConsumer(db, "dlq-reader", ["dlq"], partitions=3)
    assert [m.value for m in drain(dlq, 1)] == [b"dead letter"]
    dlq.close()
    fast.close()


def test_offsets_keep_growing_after_everything_was_pruned(
    producer: SqliteProducer, db: Path
) -> None:
    producer.publish_batch(TOPIC, [(b"k", b"1"), (b"k", b"2")])
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=3)
    first = drain(consumer, 2)
    consumer.commit(first)
    assert consumer.prune(retention_ms=0) == 2
    producer.publish(TOPIC, b"k", b"3")
    [third] = drain(consumer, 1)
    consumer.close()
    assert third.offset == first[-1].offset + 1


def test_a_topic_keeps_its_partition_count(db: Path) -> None:
    narrow = SqliteProducer(db, partitions=2)
    narrow.publish(TOPIC, b"first", b"v")
    narrow.close()
    wider = SqliteProducer(db, partitions=8)
    wider.publish_batch(TOPIC, [(f"k{i}".encode(), b"v") for i in range(50)])
    wider.close()
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=8)
    assert {m.partition for m in drain(consumer, 51)} == {0, 1}
    consumer.close()


def test_factory_picks_the_embedded_adapter_and_rejects_unknown_schemes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, partitions=2)
    producer = open_producer(settings)
    producer.publish(settings.topic, b"id", b"value")
    consumer = open_consumer(settings)
    assert [m.value for m in consumer.poll_batch(10, 5.0)] == [b"value"]
    consumer.close()
    producer.close()
    assert (tmp_path / "queue.db").exists()

    with pytest.raises(ConfigError, match="unknown scheme"):
        open_producer(Settings(data_dir=tmp_path, queue_url="redis://localhost"))
    with pytest.raises(ConfigError, match="unknown option"):
        open_consumer(Settings(data_dir=tmp_path, queue_url=f"sqlite:///{tmp_path}/q.db?x=1"))


def test_relative_sqlite_urls_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    producer = open_producer(Settings(data_dir=tmp_path, queue_url="sqlite:///rel/q.db"))
    producer.publish("t", None, b"v")
    producer.close()
    assert (tmp_path / "rel" / "q.db").exists()


def test_a_batch_larger_than_one_insert_keeps_every_record_in_order_with_gap_free_offsets(
    db: Path, producer: SqliteProducer
) -> None:
    """A batch goes in as few multi-row INSERTs (``INSERT_SIZES``): one that needs every size
    keeps each partition's records in publish order at consecutive offsets, and
    the next batch continues each partition where it stopped."""
    first = [
        (f"k{i % 7}".encode(), f"a{i}".encode())
        for i in range(2 * INSERT_SIZES[0] + 64 + 16 + 4 + 3)
    ]
    second = [(f"k{i % 7}".encode(), f"b{i}".encode()) for i in range(5)]
    producer.publish_batch(TOPIC, first)
    producer.publish_batch(TOPIC, second)
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=3)
    try:
        got = drain(consumer, len(first) + len(second))
    finally:
        consumer.close()
    assert len(got) == len(first) + len(second)
    by_part: dict[int, list[Message]] = {}
    for m in got:
        by_part.setdefault(m.partition, []).append(m)
    for part, messages in by_part.items():
        messages.sort(key=lambda m: m.offset)
        assert [m.offset for m in messages] == list(range(len(messages))), part
        published = [v for k, v in first + second if producer._partition_for(k, 3) == part]
        assert [m.value for m in messages] == published
