"""``llmtap replay`` (offset, time) and the DLQ re-drive on the embedded queue, SQLite records and
files: what a user sees is the rows, the dead letters and the summary counts."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmtap.cli import main
from llmtap.consumer.dlq import DeadLetter, decode_dead_letter
from llmtap.consumer.redrive import HEADER_HISTORY, HEADER_REDRIVES, RedriveReport, redrive
from llmtap.consumer.replay import replay, start_ms
from llmtap.consumer.replay_cli import parse_time_ms
from llmtap.consumer.service import ConsumerService
from llmtap.errors import ConfigError
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.record import BodyRef, LogRecord, Timing, encode
from llmtap.settings import Settings
from llmtap.stores.bodies.port import body_key
from llmtap.stores.factory import open_body_store, open_records_store
from support.probes import wait_for

IDLE_S = 0.3


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        partitions=2,
        batch_max_wait_s=0.05,
        retry_backoff_s=0.01,
        retry_backoff_max_s=0.05,
        max_attempts=1,
        dlq_max_redrives=2,
    )


def record(request_id: str) -> LogRecord:
    return LogRecord(
        request_id=request_id,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        status=200,
        timing=Timing(start_unix_ms=time.time() * 1000, total_ms=20.0),
        request_body=BodyRef(key=body_key(None, request_id, "request"), size=10),
    )


def put_body(settings: Settings, request_id: str) -> None:
    bodies = open_body_store(settings.bodies_url)
    try:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        bodies.put(body_key(None, request_id, "request"), json.dumps(body).encode())
    finally:
        bodies.close()


def publish(settings: Settings, ids: list[str], *, bodies: bool = True) -> None:
    producer = open_producer(settings)
    try:
        for request_id in ids:
            if bodies:
                put_body(settings, request_id)
            producer.publish(settings.topic, request_id.encode(), encode(record(request_id)))
    finally:
        producer.close()


def publish_raw(settings: Settings, value: bytes) -> None:
    producer = open_producer(settings)
    try:
        producer.publish(settings.topic, b"raw", value)
    finally:
        producer.close()


@pytest.fixture
def consumed(settings: Settings) -> Iterator[ConsumerService]:
    """The live consumer, run until the queue is empty, then stopped (chDB allows one user)."""
    service = ConsumerService(settings)
    yield service
    if service.running:
        assert service.stop(timeout=30)


def consume_all(service: ConsumerService, processed: int, dead: int = 0) -> None:
    service.start()
    wait_for(
        lambda: service.processed == processed and service.dead_lettered == dead,
        timeout_s=20,
        what=f"{processed} processed and {dead} dead-lettered",
    )
    assert service.stop(timeout=30)


def rows(settings: Settings) -> int:
    store = open_records_store(settings.records_url)
    try:
        return store.count_requests(None)
    finally:
        store.close()


def stored(settings: Settings, request_id: str) -> bool:
    store = open_records_store(settings.records_url)
    try:
        return store.get_request(None, request_id) is not None
    finally:
        store.close()


def dead_letters(settings: Settings) -> list[DeadLetter]:
    reader = open_consumer(settings, group="inspect", topics=[settings.dlq_topic])
    try:
        letters: list[DeadLetter] = []
        while batch := reader.poll_batch(100, 0.1):
            letters += [decode_dead_letter(m.value) for m in batch]
        return letters
    finally:
        reader.close()


def test_replay_from_offset_zero_reprocesses_everything_into_the_same_rows(
    settings: Settings, consumed: ConsumerService
) -> None:
    ids = [f"r-{i}" for i in range(12)]
    publish(settings, ids)
    consume_all(consumed, 12)

    report = replay(settings, from_offset=0, idle_s=IDLE_S)
    assert report.complete and report.processed == 12 and report.dead_lettered == 0
    assert rows(settings) == 12
    # the live group's progress is untouched: nothing left for it, nothing redone
    live = open_consumer(settings)
    try:
        assert sum(live.lag().values()) == 0
    finally:
        live.close()


def test_replay_one_partition_from_an_offset_skips_the_rest(
    settings: Settings, consumed: ConsumerService
) -> None:
    publish(settings, [f"p-{i}" for i in range(20)])
    consume_all(consumed, 20)
    reader = open_consumer(settings, group="count")
    try:
        per_partition: dict[int, int] = {}
        while batch := reader.poll_batch(100, 0.1):
            for m in batch:
                per_partition[m.partition] = per_partition.get(m.partition, 0) + 1
    finally:
        reader.close()
    assert per_partition[1] > 2

    report = replay(settings, from_offset=2, partitions=[1], idle_s=IDLE_S)
    assert report.complete and report.processed == per_partition[1] - 2
    assert rows(settings) == 20


def test_replay_from_a_time_takes_only_what_came_after_it(
    settings: Settings, consumed: ConsumerService
) -> None:
    publish(settings, [f"old-{i}" for i in range(5)])
    split = int(time.time() * 1000)
    wait_for(lambda: time.time() * 1000 > split + 5, what="a few milliseconds to pass")
    publish(settings, [f"new-{i}" for i in range(3)])
    consume_all(consumed, 8)

    report = replay(settings, from_time_ms=split + 1, idle_s=IDLE_S)
    assert report.complete and report.processed == 3
    assert rows(settings) == 8


def test_dead_letters_are_redriven_into_the_stores_once_the_cause_is_fixed(
    settings: Settings, consumed: ConsumerService
) -> None:
    publish(settings, ["healthy"])
    publish(settings, ["late-body"], bodies=False)
    consume_all(consumed, 1, dead=1)
    assert not stored(settings, "late-body")

    put_body(settings, "late-body")  # the cause is fixed
    report = redrive(settings, idle_s=IDLE_S)
    assert report.complete and report.redriven == 1 and report.dead_again == 0
    assert stored(settings, "late-body") and rows(settings) == 2

    # the re-drive's progress is kept: a second run finds nothing to do
    again = redrive(settings, idle_s=IDLE_S)
    assert again.redriven == 0 and again.dead_again == 0 and rows(settings) == 2


def test_a_letter_that_keeps_failing_stays_dead_after_the_cap_with_its_history(
    settings: Settings, consumed: ConsumerService
) -> None:
    publish_raw(settings, b"\x00 never a record")
    consume_all(consumed, 0, dead=1)

    first = redrive(settings, idle_s=IDLE_S)
    second = redrive(settings, idle_s=IDLE_S)
    third = redrive(settings, idle_s=IDLE_S)
    assert (first.dead_again, second.dead_again, third.dead_again) == (1, 1, 0)
    assert third.stayed_dead == 1 and third.redriven == 0

    letters = dead_letters(settings)
    assert len(letters) == 3
    last = letters[-1]
    assert last.original == b"\x00 never a record" and last.error_type == "RecordDecodeError"
    assert last.topic == settings.topic  # still points at where the record came from
    assert last.original_headers[HEADER_REDRIVES] == b"2"
    earlier = json.loads(last.original_headers[HEADER_HISTORY])
    assert [h["error_type"] for h in earlier] == ["RecordDecodeError", "RecordDecodeError"]
    assert all(h["dead_letter"].startswith(f"{settings.dlq_topic}/") for h in earlier)


def test_the_replay_command_prints_what_it_did(
    settings: Settings, consumed: ConsumerService, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(settings, ["c-1", "c-2"])
    consume_all(consumed, 2)
    data = ["--data-dir", str(settings.data_dir)]
    assert main([*data, "replay", "--from-offset", "0", "--idle-s", str(IDLE_S)]) == 0
    assert "2 record(s) stored again" in capsys.readouterr().out
    assert main([*data, "replay", "--dlq", "--idle-s", str(IDLE_S)]) == 0
    assert "0 stored, 0 dead again" in capsys.readouterr().out
    assert main([*data, "replay", "--from-time", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_times_without_a_zone_are_utc() -> None:
    assert parse_time_ms("2026-11-25T00:00:00Z") == parse_time_ms("2026-11-25")
    assert parse_time_ms("2026-11-25T01:00:00+01:00") == parse_time_ms("2026-11-25T00:00")
    with pytest.raises(ConfigError):
        parse_time_ms("25/11/2026")


def test_following_the_dlq_waits_a_growing_backoff_between_redrives_then_gives_up(
    settings: Settings, consumed: ConsumerService, caplog: pytest.LogCaptureFixture
) -> None:
    base_s = 0.3
    following = settings.model_copy(
        update={"dlq_redrive_backoff_s": base_s, "dlq_redrive_backoff_max_s": 10.0}
    )
    publish_raw(settings, b"\x00 still not a record")
    consume_all(consumed, 0, dead=1)

    stop = threading.Event()
    reports: list[RedriveReport] = []
    worker = threading.Thread(
        target=lambda: reports.append(redrive(following, follow=True, stop=stop))
    )
    caplog.set_level(logging.WARNING, logger="llmtap.consumer.redrive")
    worker.start()
    try:
        wait_for(lambda: "it stays dead" in caplog.text, timeout_s=20, what="the cap")
    finally:
        stop.set()
        worker.join(30)
    (report,) = reports
    assert (report.dead_again, report.stayed_dead, report.redriven) == (2, 1, 0)

    letters = dead_letters(settings)
    failed_at = [letter.last_failure_unix_ms for letter in letters]
    assert len(failed_at) == 3
    # 0.3 s after the first failure, then 0.6 s after the second: never sooner
    assert failed_at[1] - failed_at[0] >= base_s * 1000
    assert failed_at[2] - failed_at[1] >= 2 * base_s * 1000


@pytest.mark.parametrize("bound", [start_ms])
def test_a_message_published_right_after_a_pass_starts_is_stamped_after_its_bound(
    settings: Settings, bound: Callable[[], int]
) -> None:
    # The cause of a flaky re-drive: its own dead letter, written within the millisecond it
    # started, passed for one that was on the topic before and was re-driven a second time.
    producer = open_producer(settings)
    consumer = open_consumer(settings, group="stamps")
    try:
        for _ in range(5):
            until = bound()
            producer.publish(settings.topic, b"k", b"v")
            (message,) = consumer.poll_batch(10, 2.0)
            assert message.timestamp_ms > until
    finally:
        producer.close()
        consumer.close()
