"""chDB's broken parts after a full disk are set aside without losing a row (chdb_repair.py).

chDB 4.4.0, its disk filling while it merges, can commit the merged part with an empty marks file;
every query of the table then failed (``Code: 246 ... Empty marks file``) until an operator moved
the part away, and the rows it held were gone with it. The first two tests make that part by hand
(the defect's exact result: the marks file of the merged part truncated to nothing), the last one
lets chDB make it, on a real full disk, as often as it will in a few rounds.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from llmtap.errors import LlmtapError, StoreUnavailable
from llmtap.stores.analytics.chdb_client import ChdbClient
from llmtap.stores.analytics.ddl import TABLE
from llmtap.stores.analytics.metrics import MetricsQuery
from llmtap.stores.analytics.store import AnalyticsStore
from llmtap.stores.row import RequestRow
from support.small_disk import SmallDisk

ORG = "org-broken-parts"


def _row(i: int) -> RequestRow:
    return RequestRow(
        request_id=f"r{i:07d}",
        org_id=ORG,
        created_unix_ms=1.7e12 + i,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://x/v1",
        path="/v1",
        status=200,
        usage_source="provider",
        cost_source="genai-prices",
        latency_ms=float(i % 97),
        cost_nano_usd=i,
        properties={"p": "x" * 200},
    )


def _count(store: AnalyticsStore) -> int:
    query = MetricsQuery(org_id=ORG, start_unix_ms=0, end_unix_ms=2e12)
    return store.metrics(query).totals.requests


def _break_the_merged_part(client: ChdbClient) -> tuple[str, Path]:
    """Merge the table into one part and empty its marks file, as the defect leaves it."""
    client.command(f"OPTIMIZE TABLE {TABLE} FINAL")
    (part,) = client.query_rows(
        "SELECT name, path FROM system.parts WHERE active AND table = {t:String}", {"t": TABLE}
    )
    directory = Path(part["path"])
    (marks,) = [p for p in directory.iterdir() if "mrk" in p.suffix]
    marks.write_bytes(b"")
    return part["name"], directory.parent


def _store(path: Path) -> tuple[AnalyticsStore, ChdbClient]:
    client = ChdbClient(path)
    return AnalyticsStore(client, retention_days=0), client


def test_a_query_meeting_a_broken_merged_part_sets_it_aside_and_counts_every_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, client = _store(tmp_path / "analytics")
    try:
        for batch in range(5):
            store.write_batch([_row(batch * 100 + i) for i in range(100)])
        name, table_dir = _break_the_merged_part(client)
        with caplog.at_level(logging.ERROR):
            assert _count(store) == 500
        assert (table_dir / "detached" / f"broken-on-start_{name}").is_dir()
        assert "reopening the store" in caplog.text
        # the store goes on as before: writes and queries on the reopened session
        store.write_batch([_row(1000 + i) for i in range(10)])
        assert _count(store) == 510
    finally:
        store.close()


def test_an_insert_after_a_failed_one_finds_the_broken_part_and_asks_for_its_batch_again(
    tmp_path: Path,
) -> None:
    """No query needed: the check after the insert that follows a failed one finds the part."""
    with SmallDisk(tmp_path / "disk", size_mib=64) as disk:
        store, client = _store(disk.path / "analytics")
        try:
            for batch in range(5):
                store.write_batch([_row(batch * 100 + i) for i in range(100)])
            _, table_dir = _break_the_merged_part(client)
            disk.fill()
            with pytest.raises(StoreUnavailable, match=r"not enough space|No space"):
                store.write_batch([_row(600 + i) for i in range(100)])
            disk.free()
            # the insert itself went in, but the store cannot tell which part was broken: the
            # consumer is told to write the batch again (copies count once: FINAL)
            with pytest.raises(StoreUnavailable, match="written again"):
                store.write_batch([_row(600 + i) for i in range(100)])
            assert any(
                p.name.startswith("broken-on-start_") for p in (table_dir / "detached").iterdir()
            )
            store.write_batch([_row(600 + i) for i in range(100)])
            assert _count(store) == 600
        finally:
            store.close()


def test_rounds_of_a_full_disk_under_steady_inserts_lose_no_row(tmp_path: Path) -> None:
    """The defect for real: a writer retrying each batch until it is taken (as the consumer
    does) while the disk fills and frees; after every round the store counts exactly what it
    took — before the repair, a round or two in made every query fail."""
    with SmallDisk(tmp_path / "disk", size_mib=64) as disk:
        store, _ = _store(disk.path / "analytics")
        written = 0
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            nonlocal written
            while not stop.is_set():
                batch = [_row(written + i) for i in range(20)]
                while True:
                    try:
                        store.write_batch(batch)
                        break
                    except LlmtapError:
                        if stop.wait(0.05):
                            # the last batch may or may not be in: written again below
                            return
                    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                        errors.append(exc)
                        return
                written += len(batch)

        try:
            for _ in range(4):
                stop.clear()
                thread = threading.Thread(target=writer)
                thread.start()
                stop.wait(0.5)
                disk.fill()
                stop.wait(1.5)
                disk.free()
                stop.wait(0.5)
                stop.set()
                thread.join()
                assert errors == []
                # a batch left half-way is taken now, on a disk with room (copies count once)
                _take([_row(written + i) for i in range(20)], store)
                written += 20
                assert _count(store) == written
        finally:
            store.close()


def _take(batch: list[RequestRow], store: AnalyticsStore) -> None:
    for _ in range(100):
        try:
            store.write_batch(batch)
            return
        except StoreUnavailable:
            threading.Event().wait(0.1)
    store.write_batch(batch)
