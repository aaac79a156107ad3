"""The runner's partition-revocation hook, on the real embedded queue and SQLite records store.

The embedded queue never revokes (one member per group), so the test plays Kafka's part: it calls
the hook the runner registered with the partitions being taken away, as librdkafka does inside a
poll or on close. Commits fail on demand behind a switch (the coordinator away).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from llmtap.consumer.chain import build_chain
from llmtap.consumer.runner import BatchRunner, RunnerConfig
from llmtap.errors import QueueError
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.forwarding import ForwardingConsumer
from llmtap.queue.port import GroupConsumer, Message, OnRevoke
from llmtap.record import BodyRef, LogRecord, Timing, encode
from llmtap.settings import Settings
from llmtap.stores.bodies.port import body_key
from llmtap.stores.factory import open_body_store, open_records_store


class Coordinator(ForwardingConsumer):
    """The real consumer; commits fail while ``down``; ``revoke`` runs the registered hook."""

    def __init__(self, inner: GroupConsumer) -> None:
        super().__init__(inner)
        self.down = False
        self.hook: OnRevoke | None = None

    def commit(self, messages: Sequence[Message]) -> None:
        if self.down:
            raise QueueError("kafka: commit failed: Local: Waiting for coordinator")
        self._inner.commit(messages)

    def set_on_revoke(self, callback: OnRevoke | None) -> None:
        self.hook = callback

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        assert self.hook is not None, "the runner registered no revocation hook"
        self.hook(partitions)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        partitions=2,
        batch_max_wait_s=0.05,
        retry_backoff_s=0.01,
        retry_backoff_max_s=0.02,
        max_attempts=2,
    )


@pytest.fixture
def runner_and_queue(settings: Settings) -> Iterator[tuple[BatchRunner, Coordinator]]:
    producer = open_producer(settings)
    records = open_records_store(settings.records_url)
    bodies = open_body_store(settings.bodies_url)
    queue = Coordinator(open_consumer(settings))
    for i in range(6):
        request_id = f"rev-{i}"
        key = body_key(None, request_id, "request")
        bodies.put(key, json.dumps({"model": "gpt-4o-mini", "messages": []}).encode())
        record = LogRecord(
            request_id=request_id,
            source="proxy",
            provider="openai",
            method="POST",
            target_url="https://api.openai.com/v1/chat/completions",
            status=200,
            timing=Timing(start_unix_ms=time.time() * 1000, total_ms=5.0),
            request_body=BodyRef(key=key, size=10),
        )
        producer.publish(settings.topic, request_id.encode(), encode(record))
    runner = BatchRunner(
        queue,
        producer,
        build_chain(settings, records, bodies),
        [records],
        RunnerConfig.from_settings(settings),
    )
    yield runner, queue
    queue.close()
    producer.close()
    records.close()
    bodies.close()


def written_but_uncommitted(runner: BatchRunner, queue: Coordinator) -> dict[int, int]:
    """Run one batch whose commit fails; returns the lag per partition left behind."""
    queue.down = True
    assert runner.run_once() == 0
    queue.down = False
    lag = {p: n for (_, p), n in queue.lag().items()}
    assert sum(lag.values()) == 6, "the batch should be written but not committed"
    return lag


def test_revocation_commits_the_written_batch_of_the_partitions_taken_away(
    settings: Settings, runner_and_queue: tuple[BatchRunner, Coordinator]
) -> None:
    runner, queue = runner_and_queue
    lag = written_but_uncommitted(runner, queue)
    assert all(lag.values()), "both partitions hold records"

    queue.revoke([(settings.topic, 0)])
    after = {p: n for (_, p), n in queue.lag().items()}
    assert after == {0: 0, 1: lag[1]}  # only the revoked partition is committed

    queue.revoke([(settings.topic, 1)])
    assert sum(queue.lag().values()) == 0
    # nothing is left to commit: a second revocation commits nothing more and does not fail
    queue.revoke([(settings.topic, 0), (settings.topic, 1)])


def test_a_revocation_that_cannot_commit_leaves_the_batch_for_the_next_owner(
    settings: Settings, runner_and_queue: tuple[BatchRunner, Coordinator]
) -> None:
    runner, queue = runner_and_queue
    written_but_uncommitted(runner, queue)
    queue.down = True
    queue.revoke([(settings.topic, 0), (settings.topic, 1)])  # logged, not raised
    queue.down = False
    assert sum(queue.lag().values()) == 6


def test_the_written_batch_is_committed_on_revocation_after_the_runner_moved_on(
    settings: Settings, runner_and_queue: tuple[BatchRunner, Coordinator]
) -> None:
    runner, queue = runner_and_queue
    written_but_uncommitted(runner, queue)
    # the runner's position moved on: redelivery only comes with a new owner or a restart
    assert runner.run_once() == 0
    queue.revoke([(settings.topic, 0), (settings.topic, 1)])
    assert sum(queue.lag().values()) == 0
