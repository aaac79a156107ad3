"""Group commit in the embedded queue (``SqliteProducer(group_commit_s=...)``, the proxy's
``queue_group_commit_ms``): every publish is committed, one fsync of the write-ahead log covers
an interval's commits, ``flush`` and ``close`` sync what is left, and a failing fsync never makes
a committed batch look refused (the shipper would spool it a second time).

fsync is observed by wrapping ``os.fsync`` (it still syncs): a power cut cannot be staged here.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.errors import QueueError
from llmtap.queue.sqlite import SqliteConsumer, SqliteProducer

TOPIC = "logs"


class FsyncSpy:
    """Counts ``os.fsync`` calls on the queue's write-ahead log; can make them fail."""

    def __init__(self, wal: Path) -> None:
        self.wal = wal
        self.calls = 0
        self.fail = False
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        if os.path.samestat(os.fstat(fd), os.stat(self.wal)):
            self.calls += 1
            if self.fail:
                raise OSError(errno.EIO, "Input/output error")
        self._real(fd)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def spy(db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FsyncSpy]:
    fsync = FsyncSpy(Path(f"{db}-wal"))
    monkeypatch.setattr(os, "fsync", fsync)
    yield fsync


def read_all(db: Path, count: int) -> list[bytes]:
    consumer = SqliteConsumer(db, "g", [TOPIC], partitions=2)
    got: list[bytes] = []
    for _ in range(50):
        got += [m.value for m in consumer.poll_batch(count - len(got), 0.1)]
        if len(got) >= count:
            break
    consumer.close()
    return got


def batch(n: int, tag: str) -> list[tuple[bytes | None, bytes]]:
    return [(f"{tag}-{i}".encode(), f"{tag}-{i}".encode()) for i in range(n)]


def test_one_fsync_covers_an_intervals_commits_and_flush_and_close_sync_the_rest(
    db: Path, spy: FsyncSpy
) -> None:
    producer = SqliteProducer(db, 2, group_commit_s=3600.0)
    producer.publish_batch(TOPIC, batch(3, "a"))  # the first commit opens the interval: synced
    assert spy.calls == 1
    for n in range(10):
        producer.publish_batch(TOPIC, batch(3, f"b{n}"))
    assert spy.calls == 1, "commits inside the interval wait for one fsync"
    assert len(read_all(db, 33)) == 33, "yet every publish is committed (other readers see it)"

    assert producer.flush(0) == 0
    assert spy.calls == 2
    producer.flush(0)
    assert spy.calls == 2, "nothing new to sync"

    producer.publish(TOPIC, b"last", b"last")
    producer.close()
    assert spy.calls == 3, "close syncs the last commits"


def test_without_group_commit_the_queue_does_not_fsync_by_hand(db: Path, spy: FsyncSpy) -> None:
    # synchronous=FULL: SQLite syncs each commit itself; the producer adds nothing
    producer = SqliteProducer(db, 2)
    producer.publish_batch(TOPIC, batch(3, "a"))
    producer.flush(0)
    producer.close()
    assert spy.calls == 0
    assert len(read_all(db, 3)) == 3


def test_a_failing_fsync_leaves_publish_succeeding_and_makes_flush_raise(
    db: Path, spy: FsyncSpy, caplog: pytest.LogCaptureFixture
) -> None:
    producer = SqliteProducer(db, 2, group_commit_s=3600.0)
    spy.fail = True
    with caplog.at_level(logging.WARNING, logger="llmtap.queue.sqlite"):
        producer.publish_batch(TOPIC, batch(4, "a"))  # must not raise: the batch is committed
    assert "syncing" in caplog.text and "Input/output error" in caplog.text
    assert len(read_all(db, 4)) == 4

    with pytest.raises(QueueError, match="syncing"):
        producer.flush(0)
    spy.fail = False
    producer.flush(0)  # the disk is back: the commits are synced now
    calls = spy.calls
    producer.flush(0)
    assert spy.calls == calls

    producer.publish(TOPIC, b"last", b"last")
    spy.fail = True
    with caplog.at_level(logging.ERROR, logger="llmtap.queue.sqlite"):
        producer.close()  # shutdown goes on: the commit is in the file all the same
    assert "at close" in caplog.text
    spy.fail = False
    assert len(read_all(db, 5)) == 5


def test_commits_not_yet_synced_survive_a_crash_of_the_publishing_process(db: Path) -> None:
    # The process dies without flush or close, its last commits still unsynced: SQLite's
    # write-ahead log is in the kernel's page cache, which outlives the process.
    code = (
        "import os\nfrom pathlib import Path\nfrom llmtap.queue.sqlite import SqliteProducer\n"
        f"p = SqliteProducer(Path({str(db)!r}), 2, group_commit_s=3600.0)\n"
        "for n in range(20):\n"
        f"    p.publish_batch({TOPIC!r}, [(f'{{n}}-{{i}}'.encode(), b'v') for i in range(5)])\n"
        "os._exit(0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert len(read_all(db, 100)) == 100
