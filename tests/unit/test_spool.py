"""The disk spool, replayed into the real embedded queue."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.errors import QueueError
from llmtap.queue.port import Message
from llmtap.queue.spool import Spool, encode_record
from llmtap.queue.sqlite import SqliteConsumer, SqliteProducer


@pytest.fixture
def queue_db(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def producer(queue_db: Path) -> Iterator[SqliteProducer]:
    p = SqliteProducer(queue_db, partitions=1)
    yield p
    p.close()


def read_all(queue_db: Path, topics: list[str], count: int) -> list[Message]:
    consumer = SqliteConsumer(queue_db, "test", topics, partitions=1)
    got: list[Message] = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll_batch(count, 0.2)
    extra = consumer.poll_batch(10, 0.05)
    consumer.close()
    assert extra == [], "more messages than expected"
    return got


def test_replay_publishes_everything_in_order_then_empties(
    tmp_path: Path, producer: SqliteProducer, queue_db: Path
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, segment_bytes=300)
    for i in range(20):
        assert spool.append("logs", f"id-{i}".encode(), f"value-{i}".encode())
    spool.append("dlq", None, b"dead")
    assert spool.pending == 21
    assert len(list((tmp_path / "spool").glob("*.seg"))) > 1  # small segments: several files

    assert spool.replay(producer) == 21
    assert spool.pending == 0 and spool.size_bytes == 0
    assert list((tmp_path / "spool").glob("*.seg")) == []
    assert spool.replay(producer) == 0  # nothing published twice
    spool.close()

    logs = read_all(queue_db, ["logs"], 20)
    assert [(m.key, m.value) for m in logs] == [
        (f"id-{i}".encode(), f"value-{i}".encode()) for i in range(20)
    ]
    [dead] = read_all(queue_db, ["dlq"], 1)
    assert (dead.key, dead.value) == (None, b"dead")


def test_records_survive_a_crash_and_a_torn_tail_is_cut(
    tmp_path: Path, producer: SqliteProducer, queue_db: Path
) -> None:
    directory = tmp_path / "spool"
    # A process appends and dies without closing anything...
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\nfrom pathlib import Path\nfrom llmtap.queue.spool import Spool\n"
            f"s = Spool(Path({str(directory)!r}), 1 << 20)\n"
            "for i in range(3): s.append('logs', b'k%d' % i, b'v%d' % i)\nos._exit(0)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # ...and the crash tore the record it was writing: only half of it reached the file.
    [segment] = directory.glob("*.seg")
    torn = encode_record("logs", b"k3", b"v3" * 50)
    with segment.open("ab") as fh:
        fh.write(torn[: len(torn) // 2])

    spool = Spool(directory, max_bytes=1 << 20)
    assert spool.pending == 3
    assert spool.append("logs", b"k4", b"v4")  # appending after recovery works
    assert spool.replay(producer) == 4
    spool.close()
    got = read_all(queue_db, ["logs"], 4)
    assert [m.value for m in got] == [b"v0", b"v1", b"v2", b"v4"]


def test_a_corrupt_record_is_not_replayed(
    tmp_path: Path, producer: SqliteProducer, queue_db: Path
) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, max_bytes=1 << 20)
    spool.append("logs", b"k0", b"good")
    spool.append("logs", b"k1", b"flipped")
    spool.close()
    [segment] = directory.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # a bit flip in the last record's value
    segment.write_bytes(bytes(data))

    spool = Spool(directory, max_bytes=1 << 20)
    assert spool.replay(producer) == 1
    spool.close()
    assert [m.value for m in read_all(queue_db, ["logs"], 1)] == [b"good"]


def test_a_full_spool_drops_counts_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, producer: SqliteProducer
) -> None:
    frame = len(encode_record("logs", b"key", b"x" * 100))
    spool = Spool(tmp_path / "spool", max_bytes=frame * 5)
    with caplog.at_level(logging.WARNING, logger="llmtap.queue.spool"):
        kept = [spool.append("logs", b"key", b"x" * 100) for _ in range(8)]
    assert kept == [True] * 5 + [False] * 3
    assert spool.dropped == 3
    assert spool.size_bytes <= spool.max_bytes
    assert any("dropped" in r.getMessage() for r in caplog.records)

    assert spool.append_many([("logs", b"key", b"x" * 100)] * 2) == 0
    assert spool.dropped == 5
    # room again once replayed
    assert spool.replay(producer) == 5
    assert spool.append("logs", b"key", b"x" * 100)
    spool.close()


def test_replay_keeps_records_while_the_queue_is_down_and_sends_them_when_back(
    tmp_path: Path, queue_db: Path
) -> None:
    setup = SqliteProducer(queue_db, partitions=1)
    setup.publish("logs", b"warm-up", b"0")  # create the topic before the outage
    setup.close()
    impatient = SqliteProducer(queue_db, partitions=1, busy_timeout_ms=50)
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    spool.append_many([("logs", f"k{i}".encode(), f"v{i}".encode()) for i in range(5)])

    # Another process holds the write lock: the queue cannot take anything.
    blocker = sqlite3.connect(queue_db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(QueueError):
        spool.replay(impatient)
    assert spool.pending == 5

    blocker.execute("ROLLBACK")
    blocker.close()
    assert spool.replay(impatient) == 5
    assert spool.pending == 0
    spool.close()
    impatient.close()
    got = read_all(queue_db, ["logs"], 6)
    assert [m.value for m in got] == [b"0", b"v0", b"v1", b"v2", b"v3", b"v4"]


def test_processes_get_their_own_slots_and_a_dead_ones_slot_is_drained(
    tmp_path: Path, producer: SqliteProducer, queue_db: Path
) -> None:
    base = tmp_path / "spool"
    first = Spool.claim(base, 1 << 20)
    second = Spool.claim(base, 1 << 20)
    assert first.directory != second.directory
    with pytest.raises(QueueError, match="in use"):
        Spool(first.directory, 1 << 20)

    second.append("logs", b"k", b"from the process that died")
    second.close()  # its owner is gone: the slot lock is free
    first.append("logs", b"k", b"mine")
    assert first.replay(producer) == 2
    first.close()
    got = read_all(queue_db, ["logs"], 2)
    assert sorted(m.value for m in got) == [b"from the process that died", b"mine"]


def test_a_failing_disk_drops_and_counts_but_keeps_what_was_written(
    tmp_path: Path, producer: SqliteProducer, queue_db: Path
) -> None:
    directory = tmp_path / "spool"
    # A real write failure: the OS refuses to grow files past 1000 bytes in this process (EFBIG).
    code = f"""
import resource, signal
from pathlib import Path
from llmtap.queue.spool import Spool
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
spool = Spool(Path({str(directory)!r}), max_bytes=1 << 20)
kept = [spool.append("logs", b"k%d" % i, b"x" * 100) for i in range(20)]
print(kept.count(True), spool.dropped)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    kept, dropped = map(int, result.stdout.split())
    assert 0 < kept < 20 and dropped == 20 - kept

    spool = Spool(directory, max_bytes=1 << 20)
    assert spool.pending == kept
    assert spool.replay(producer) == kept
    spool.close()
    assert [m.key for m in read_all(queue_db, ["logs"], kept)] == [b"k%d" % i for i in range(kept)]
