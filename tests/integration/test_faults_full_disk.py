"""A disk that fills up under ``llmtap serve``, for real: a small tmpfs the test mounts and fills
(``support.small_disk``), with the gateway running on it under load.

What an operator is promised (docs/operations.md, "The disk is full"): calls keep being answered;
a record that can be kept nowhere is counted in ``llmtap_proxy_records_dropped_total`` and logged;
nothing else is lost, nothing is stored twice; and once space returns everything resumes without
a restart. The same with only the analytics store's disk full (and only the records store's):
after recovery no call is in one store and not in the other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import gateway_env
from llmtap.errors import QueueError
from llmtap.queue.sqlite import SqliteConsumer, SqliteProducer
from llmtap.stores.factory import open_records_store
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.load import Answers, Load, proxy_metrics
from support.probes import wait_for
from support.small_disk import SmallDisk


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with SmallDisk(tmp_path / "disk", size_mib=64) as small:
        yield small


def stored_ids(gateway: GatewayProcess, records_url: str | None = None) -> list[str]:
    store = open_records_store(records_url or gateway.records_url)
    try:
        return [r.request_id for r in store.recent_requests(None, 100_000)]
    finally:
        store.close()


def analytics_count(gateway: GatewayProcess, key: str) -> int:
    reply = httpx.get(
        gateway.api_url + "/v1/metrics", headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    count: int = reply.json()["totals"]["requests"]
    return count


def assert_no_crash_and_no_dead_letters(output: str) -> None:
    """A full disk is an outage to wait out: no process dies of it, no record is poison for it."""
    for sign in ("unexpected error", "exited with code", "Traceback", "dead-lettering"):
        assert sign not in output, output[-4000:]


def keep_going(seconds: float) -> None:
    """Traffic runs on for a stretch of wall time (the fault's length, not a wait for a result)."""
    threading.Event().wait(seconds)


def test_a_full_data_disk_keeps_answering_counts_the_loss_and_resumes_when_space_returns(
    disk: SmallDisk, mock_upstream: MockUpstream
) -> None:
    # the data directory is the small disk itself; the log lives beside it, on a disk with room
    gateway = GatewayProcess(disk.path, env=gateway_env(mock_upstream)).start()
    try:
        key = gateway.first_key()
        assert key is not None
        gateway.wait_api()
        answers = Answers()
        with Load(gateway.url, answers, threads=4, pause_s=0.01):
            wait_for(lambda: answers.count() >= 40, timeout_s=30, what="traffic")
            disk.fill()
            full_at = answers.count()
            wait_for(
                lambda: proxy_metrics(gateway.url)["llmtap_proxy_records_dropped_total"] > 0,
                timeout_s=30,
                what="a record dropped for want of space",
            )
            keep_going(2.0)
            during = answers.count() - full_at
            disk.free()
            freed_at = answers.count()
            wait_for(lambda: answers.count() >= freed_at + 40, timeout_s=30, what="traffic after")
        assert answers.failures == [], answers.failures[:5]
        assert during > 20, "calls kept being answered while the disk was full"

        metrics = proxy_metrics(gateway.url)
        dropped = int(metrics["llmtap_proxy_records_dropped_total"])
        answered = answers.snapshot()
        # every record the proxy kept reaches the store, once; what it could not keep is counted
        wait_for(
            lambda: len(stored_ids(gateway)) + dropped >= len(answered),
            timeout_s=60,
            what="the stores to catch up after the disk freed",
        )
        stored = stored_ids(gateway)
        assert len(stored) == len(set(stored))
        assert set(stored) <= set(answered)
        assert len(stored) + dropped == len(answered), (len(stored), dropped, len(answered))
        # the calls answered after space returned are all there: it resumed without a restart
        assert set(answered[freed_at + 10 :]) <= set(stored)
        output = gateway.output()
        assert_no_crash_and_no_dead_letters(output)
        # said in the log, in a few lines rather than one per batch
        assert "No space left on device" in output
        assert 1 <= output.count("could not keep") <= 2, output[-3000:]
        assert 1 <= output.count("body store refused a pack") <= 2, output[-3000:]
        assert metrics["llmtap_proxy_bodies_dropped_total"] > 0
        # chDB's broken parts after a full disk are set aside by the store (chdb_repair.py)
        wait_for(
            lambda: analytics_count(gateway, key) == len(stored),
            timeout_s=60,
            what="analytics to count each stored call once",
        )
    finally:
        assert gateway.stop() == 0, gateway.output()[-4000:]


@pytest.mark.parametrize(
    "full",
    [
        "analytics",
        "records",
    ],
)
def test_one_store_on_a_full_disk_holds_the_batch_and_both_agree_after(
    tmp_path: Path, disk: SmallDisk, mock_upstream: MockUpstream, full: str
) -> None:
    """The analytics store's disk fills while the records store works (and the reverse): the
    consumer holds the batch (records are written first, so a batch the analytics store refused
    is already in the records store, and is written again, idempotently, on the retry)."""
    on_disk = {
        "analytics": {"LLMTAP_ANALYTICS_URL": f"chdb:///{disk.path / 'analytics'}"},
        "records": {"LLMTAP_RECORDS_URL": f"sqlite:///{disk.path / 'records.db'}"},
    }[full]
    env = gateway_env(mock_upstream, LLMTAP_RETRY_BACKOFF_MAX_S="1", **on_disk)
    gateway = GatewayProcess(tmp_path / "data", env=env).start()
    records_url = on_disk.get("LLMTAP_RECORDS_URL")
    try:
        key = gateway.first_key()
        assert key is not None
        gateway.wait_api()
        answers = Answers()
        with Load(gateway.url, answers, threads=2, pause_s=0.02):
            wait_for(
                lambda: len(stored_ids(gateway, records_url)) >= 20,
                timeout_s=30,
                what="rows stored",
            )
            disk.fill()
            held = f"sink:{full} unavailable"
            wait_for(lambda: held in gateway.output(), timeout_s=30, what="the batch held")
            keep_going(3.0)
            disk.free()
            freed_at = answers.count()
            wait_for(lambda: answers.count() >= freed_at + 20, timeout_s=30, what="traffic after")
        assert answers.failures == [], answers.failures[:5]
        answered = answers.snapshot()
        wait_for(
            lambda: len(stored_ids(gateway, records_url)) >= len(answered),
            timeout_s=60,
            what="every answered call in the records store",
        )
        stored = stored_ids(gateway, records_url)
        assert sorted(stored) == sorted(answered)
        # the analytics store counts exactly the same calls (FINAL: copies never count twice)
        wait_for(
            lambda: analytics_count(gateway, key) == len(answered),
            timeout_s=60,
            what=f"analytics to count the {len(answered)} answered calls",
        )
        assert_no_crash_and_no_dead_letters(gateway.output())
        assert proxy_metrics(gateway.url)["llmtap_proxy_records_dropped_total"] == 0
    finally:
        assert gateway.stop() == 0, gateway.output()[-4000:]


def test_a_topic_first_used_while_the_disk_is_full_works_once_space_returns(
    disk: SmallDisk,
) -> None:
    """The backend's first dead letter can arrive on a full disk: the topic it creates is rolled
    back with the failed COMMIT, and must not be remembered as created (it was, and the next
    publish crashed the consumer with a TypeError instead of a retriable QueueError)."""
    producer = SqliteProducer(disk.path / "queue.db", partitions=2)
    try:
        producer.publish_batch("first", [(b"k", b"fits")])
        disk.fill()
        with pytest.raises(QueueError):
            producer.publish_batch("second", [(b"k", b"x" * 65536)])
        disk.free()
        producer.publish_batch("second", [(b"k", b"v")])
    finally:
        producer.close()
    consumer = SqliteConsumer(disk.path / "queue.db", "check", ["second"], 2)
    try:
        assert [m.value for m in consumer.poll_batch(10, 1.0)] == [b"v"]
    finally:
        consumer.close()
