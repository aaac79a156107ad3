"""Each embedded store writes owner-only files even in a process with a loose umask (a library
user's): the adapters ask for 0700/0600 themselves, and tighten the directory they own."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.queue.spool import Spool
from llmtap.queue.sqlite import SqliteProducer
from llmtap.stores.bodies.file import FileBodyStore
from llmtap.stores.factory import open_records_store


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def open_to_others(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{oct(mode)} {path.relative_to(root)}")
    return found


@pytest.mark.usefixtures("loose_umask")
def test_embedded_stores_write_owner_only_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    producer = SqliteProducer(data / "queue.db", partitions=1)
    producer.publish("t", None, b"v")
    producer.close()
    store = open_records_store(f"sqlite:///{data / 'records.db'}")
    store.default_org_id()
    store.close()
    bodies = FileBodyStore(data / "bodies")
    bodies.put("org/packs/ab/abc.pack", b"body")
    spool = Spool(data / "spool" / "0", max_bytes=1 << 20)
    spool.append("t", None, b"record")
    spool.close()
    assert open_to_others(data) == []


@pytest.mark.usefixtures("loose_umask")
def test_a_store_directory_left_open_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "bodies").mkdir(mode=0o755)
    FileBodyStore(tmp_path / "bodies")
    assert stat.S_IMODE((tmp_path / "bodies").stat().st_mode) == 0o700
