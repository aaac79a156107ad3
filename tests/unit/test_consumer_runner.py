"""The batch runner against the real embedded queue, the real SQLite records store and file bodies.

Where a test needs a store outage or a refusal that SQLite cannot be made to produce on demand, it
wraps the real records store in a small sink that fails on purpose (``FlakySink``,
``RefusingSink``); every row that gets through is written by the real store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from llmtap.consumer.chain import build_chain
from llmtap.consumer.context import Context, Handler
from llmtap.consumer.dlq import DeadLetter, decode_dead_letter
from llmtap.consumer.runner import BatchRunner, RunnerConfig
from llmtap.errors import QueueError, StoreUnavailable
from llmtap.keys import hash_key
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.forwarding import ForwardingConsumer
from llmtap.queue.port import Failed, GroupConsumer, Message, ReportingProducer
from llmtap.record import BodyRef, LogRecord, Timing, encode
from llmtap.settings import Settings
from llmtap.stores.bodies.port import BodyStore, BodyStream, body_key
from llmtap.stores.factory import open_body_store, open_records_store
from llmtap.stores.notes import CLAIMED_REQUEST_ID
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows, Sink
from support.probes import wait_for


@dataclass
class Env:
    settings: Settings
    producer: ReportingProducer
    consumer: GroupConsumer
    records: RecordsStore
    bodies: BodyStore

    def runner(
        self, sinks: Sequence[Sink] | None = None, handlers: Sequence[Handler] = (), **config: Any
    ) -> BatchRunner:
        """A runner with the default chain, then ``handlers``."""
        cfg = replace(RunnerConfig.from_settings(self.settings), **config)
        chain = [*build_chain(self.settings, self.records, self.bodies), *handlers]
        return BatchRunner(self.consumer, self.producer, chain, sinks or [self.records], cfg)

    def publish(self, record: LogRecord, *, body: bytes | None = None) -> None:
        if body is not None:
            assert record.request_body is not None and record.request_body.key is not None
            self.bodies.put(record.request_body.key, body)
        self.producer.publish(self.settings.topic, record.request_id.encode(), encode(record))

    def publish_raw(self, value: bytes) -> None:
        self.producer.publish(self.settings.topic, b"raw", value)

    def dead_letters(self, expect: int) -> list[DeadLetter]:
        """Read the DLQ topic with its own group until ``expect`` letters arrived."""
        reader = open_consumer(self.settings, group="test-dlq", topics=[self.settings.dlq_topic])
        letters: list[DeadLetter] = []
        try:
            deadline = time.monotonic() + 5.0
            while len(letters) < expect and time.monotonic() < deadline:
                letters += [decode_dead_letter(m.value) for m in reader.poll_batch(100, 0.1)]
            # anything beyond what was expected would show up now
            letters += [decode_dead_letter(m.value) for m in reader.poll_batch(100, 0.05)]
        finally:
            reader.close()
        return letters

    def uncommitted(self) -> int:
        return sum(self.consumer.lag().values())

    def row(self, request_id: str) -> RequestRow | None:
        return self.records.get_request(None, request_id)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    settings = Settings(
        data_dir=tmp_path,
        partitions=2,
        batch_max_wait_s=0.05,
        retry_backoff_s=0.01,
        retry_backoff_max_s=0.05,
        max_attempts=3,
    )
    producer = open_producer(settings)
    consumer = open_consumer(settings)
    records = open_records_store(settings.records_url)
    bodies = open_body_store(settings.bodies_url)
    yield Env(settings, producer, consumer, records, bodies)
    consumer.close()
    producer.close()
    records.close()
    bodies.close()


def make_record(request_id: str, *, key_hash: str | None = None, body: bool = True) -> LogRecord:
    ref = BodyRef(key=body_key(None, request_id, "request"), size=10) if body else None
    return LogRecord(
        request_id=request_id,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        status=200,
        timing=Timing(start_unix_ms=1_764_000_000_000.0, total_ms=20.0),
        auth_key_hash=key_hash,
        request_body=ref,
    )


def chat_body(model: str = "gpt-4o-mini") -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()


def drain(runner: BatchRunner) -> int:
    """Run batches until the queue has nothing more to give; returns messages committed."""
    total = 0
    while done := runner.run_once():
        total += done
    return total


def test_records_become_rows_and_offsets_are_committed(env: Env) -> None:
    for i in range(5):
        env.publish(make_record(f"req-{i}"), body=chat_body())
    runner = env.runner()
    assert drain(runner) == 5
    row = env.row("req-3")
    assert row is not None
    assert row.org_id == env.records.default_org_id()
    assert row.model == "gpt-4o-mini" and row.endpoint == "chat.completions"
    assert env.records.count_requests(None) == 5
    assert env.uncommitted() == 0
    assert runner.stats.processed == 5 and runner.stats.dead_lettered == 0


def test_poison_records_are_dead_lettered_and_the_consumer_moves_on(env: Env) -> None:
    env.publish(make_record("good-1"), body=chat_body())
    env.publish_raw(b"\x00 this is not a record")
    stranger_key = hash_key("sk-llmtap-nobody-issued-this")
    env.publish(make_record("stranger", key_hash=stranger_key), body=chat_body())
    env.publish(make_record("good-2"), body=chat_body())
    runner = env.runner()
    assert drain(runner) == 4
    assert env.row("good-1") is not None and env.row("good-2") is not None
    # an answered call is never dropped for its key: the default organization, flagged
    stranger = env.row("stranger")
    assert stranger is not None and stranger.org_id == env.records.default_org_id()
    assert stranger.properties["llmtap-auth-error"] == "unknown_key"
    assert env.uncommitted() == 0

    letters = {letter.error_type: letter for letter in env.dead_letters(expect=1)}
    assert set(letters) == {"RecordDecodeError"}
    undecodable = letters["RecordDecodeError"]
    assert undecodable.original == b"\x00 this is not a record"
    assert undecodable.stage == "decode" and undecodable.attempts == 1
    assert undecodable.topic == env.settings.topic and undecodable.request_id is None
    assert undecodable.first_failure_unix_ms <= undecodable.last_failure_unix_ms
    assert runner.stats.dead_lettered == 1


def test_a_known_key_files_the_row_under_its_organization(env: Env) -> None:
    org = env.records.create_org("acme")
    _, key = env.records.create_key(org, "ci")
    env.publish(make_record("acme-1", key_hash=hash_key(key)), body=chat_body())
    drain(env.runner())
    row = env.records.get_request(org, "acme-1")
    assert row is not None and row.org_id == org


def test_a_missing_body_is_retried_then_dead_lettered_with_its_attempts(env: Env) -> None:
    env.publish(make_record("no-body"))  # refers to a body that was never written
    env.publish(make_record("fine"), body=chat_body())
    runner = env.runner()
    assert drain(runner) == 2
    (letter,) = env.dead_letters(expect=1)
    assert letter.error_type == "BodyMissing" and letter.stage == "handler:bodies"
    assert letter.attempts == 3
    assert letter.last_failure_unix_ms >= letter.first_failure_unix_ms
    assert runner.stats.retries == 2
    assert env.row("fine") is not None and env.row("no-body") is None


def test_a_body_that_shows_up_late_is_picked_up_on_retry(env: Env) -> None:
    record = make_record("late")
    env.publish(record)
    runner = env.runner(retry_backoff_s=0.5)

    def write_body_after_first_miss() -> None:
        wait_for(lambda: runner.stats.retries >= 1)
        assert record.request_body is not None and record.request_body.key is not None
        env.bodies.put(record.request_body.key, chat_body("late-model"))

    writer = threading.Thread(target=write_body_after_first_miss)
    writer.start()
    assert drain(runner) == 1
    writer.join()
    row = env.row("late")
    assert row is not None and row.model == "late-model"
    assert runner.stats.dead_lettered == 0


class FlakySink:
    """The real records store behind a switch that makes it unavailable (an outage on demand)."""

    name = "records"

    def __init__(self, inner: RecordsStore) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.failures = 0

    def write_batch(self, rows: Sequence[RequestRow]) -> None:
        if self.down.is_set():
            self.failures += 1
            raise StoreUnavailable("records store: connection refused")
        self.inner.write_batch(rows)

    def close(self) -> None:
        pass


def test_a_store_outage_holds_the_batch_without_dead_letters_or_commit(env: Env) -> None:
    for i in range(3):
        env.publish(make_record(f"out-{i}"), body=chat_body())
    sink = FlakySink(env.records)
    sink.down.set()
    runner = env.runner([sink], max_attempts=1)
    committed: list[int] = []
    worker = threading.Thread(target=lambda: committed.append(runner.run_once()))
    worker.start()
    # well past max_attempts: an outage is waited out, never counted against the records
    wait_for(lambda: sink.failures >= 4)
    assert env.uncommitted() == 3
    assert env.records.count_requests(None) == 0
    sink.down.clear()
    worker.join(timeout=10)
    assert committed == [3]
    assert env.records.count_requests(None) == 3
    assert env.uncommitted() == 0
    assert env.dead_letters(expect=0) == []
    assert runner.stats.stalls >= 4


def test_stopping_during_an_outage_leaves_the_batch_for_redelivery(env: Env) -> None:
    for i in range(3):
        env.publish(make_record(f"held-{i}"), body=chat_body())
    sink = FlakySink(env.records)
    sink.down.set()
    runner = env.runner([sink])
    stop = threading.Event()
    worker = threading.Thread(target=runner.run, args=(stop,))
    worker.start()
    wait_for(lambda: sink.failures >= 2)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert env.uncommitted() == 3
    # the store is back: the same consumer picks the batch up again (it was rewound) in full
    sink.down.clear()
    assert drain(runner) == 3
    assert env.records.count_requests(None) == 3
    assert env.dead_letters(expect=0) == []


class RefusingSink:
    """The real records store, except that it refuses some request ids for good (as a store does
    for a row it can never hold) after writing the rest."""

    name = "picky"

    def __init__(self, inner: RecordsStore, refused: set[str]) -> None:
        self.inner = inner
        self.refused = refused

    def write_batch(self, rows: Sequence[RequestRow]) -> None:
        self.inner.write_batch([r for r in rows if r.request_id not in self.refused])
        bad = {r.request_id: "value too long" for r in rows if r.request_id in self.refused}
        if bad:
            raise PoisonRows(bad)

    def close(self) -> None:
        pass


def test_rows_a_sink_refuses_are_dead_lettered_and_the_rest_written(env: Env) -> None:
    for i in range(4):
        env.publish(make_record(f"row-{i}"), body=chat_body())
    runner = env.runner([RefusingSink(env.records, {"row-2"})])
    assert drain(runner) == 4
    (letter,) = env.dead_letters(expect=1)
    assert letter.request_id == "row-2" and letter.stage == "sink:picky"
    assert letter.error_type == "PoisonRows" and "value too long" in letter.error
    assert {r.request_id for r in env.records.recent_requests(None, 10)} == {
        "row-0",
        "row-1",
        "row-3",
    }
    assert env.uncommitted() == 0


class Explodes:
    """A handler with a bug: it trips on one particular record."""

    name = "buggy"

    def __call__(self, ctx: Context) -> None:
        if ctx.record.request_id == "odd":
            raise KeyError("choices")


def test_a_handler_bug_dead_letters_only_that_record(env: Env) -> None:
    env.publish(make_record("odd"), body=chat_body())
    env.publish(make_record("even"), body=chat_body())
    runner = env.runner(handlers=[Explodes()])
    assert drain(runner) == 2
    (letter,) = env.dead_letters(expect=1)
    assert letter.stage == "handler:buggy" and letter.error_type == "KeyError"
    assert env.row("even") is not None


class OutageOnce:
    """A handler whose store is down for the first record named ``down`` it sees."""

    name = "lookup"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, ctx: Context) -> None:
        self.calls.append(ctx.record.request_id)
        if ctx.record.request_id == "down" and self.calls.count("down") == 1:
            raise StoreUnavailable("lookup store: connection refused")


@pytest.mark.parametrize("chunk", [1, 2, 3, 64])
def test_the_chain_a_handler_at_a_time_treats_each_record_alone(env: Env, chunk: int) -> None:
    # runs of ``chunk`` records go through the chain a handler at a time: a bug, a body not there
    # yet, an outage and good records mixed across run boundaries each end as they would alone
    late = make_record("late")
    names = ["a", "odd", "late", "b", "down", "c", "no-body", "d"]
    for name in names:
        if name == "late":
            env.publish(late)
        elif name == "no-body":
            env.publish(make_record(name))
        else:
            env.publish(make_record(name), body=chat_body(f"model-{name}"))
    outage = OutageOnce()
    runner = env.runner(
        handlers=[Explodes(), outage],
        chain_chunk=chunk,
        retry_backoff_s=0.05,
        retry_backoff_max_s=0.05,
    )

    def write_late_body() -> None:
        wait_for(lambda: runner.stats.retries >= 1)
        assert late.request_body is not None and late.request_body.key is not None
        env.bodies.put(late.request_body.key, chat_body("model-late"))

    writer = threading.Thread(target=write_late_body)
    writer.start()
    assert drain(runner) == len(names)
    writer.join()
    letters = {letter.request_id: letter for letter in env.dead_letters(expect=2)}
    assert set(letters) == {"odd", "no-body"}
    assert letters["odd"].stage == "handler:buggy" and letters["odd"].attempts == 1
    assert letters["no-body"].stage == "handler:bodies" and letters["no-body"].attempts == 3
    for name in ("a", "late", "b", "down", "c", "d"):
        row = env.row(name)
        assert row is not None and row.model == f"model-{name}", name
    assert runner.stats.stalls == 1  # the outage was waited out once, no attempt spent on it
    assert outage.calls.count("down") == 2
    assert env.uncommitted() == 0


def test_replaying_the_same_records_gives_one_row_each(env: Env) -> None:
    record = make_record("twice")
    env.publish(record, body=chat_body())
    env.publish(record)  # redelivered inside the same batch
    runner = env.runner()
    assert drain(runner) == 2
    assert env.records.count_requests(None) == 1
    # replay the whole topic from the start, as `llmtap replay` does
    for partition in range(env.settings.partitions):
        env.consumer.seek(partition, 0)
    assert drain(runner) == 2
    assert env.records.count_requests(None) == 1
    row = env.row("twice")
    assert row is not None and row.model == "gpt-4o-mini"


def test_stop_mid_run_commits_what_was_processed_and_loses_nothing(env: Env) -> None:
    total = 300
    for i in range(total):
        env.publish(make_record(f"s-{i:03d}"), body=chat_body())
    runner = env.runner(batch_max_records=5)
    stop = threading.Event()
    worker = threading.Thread(target=runner.run, args=(stop,))
    worker.start()
    wait_for(lambda: runner.stats.batches >= 2)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    written = env.records.count_requests(None)
    assert 10 <= written < total
    # everything written was committed: exactly the rest is left
    assert env.uncommitted() == total - written
    # a fresh consumer (a restart) picks up from the committed offsets and finishes the job
    env.consumer.close()
    env.consumer = open_consumer(env.settings)
    assert drain(env.runner()) == total - written
    assert env.records.count_requests(None) == total


class FlakyBodies:
    """The real file body store behind a switch that makes it unavailable (an outage on demand)."""

    def __init__(self, inner: BodyStore) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.failures = 0

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self.inner.put(key, data, content_type)

    def get(self, key: str) -> bytes:
        if self.down.is_set():
            self.failures += 1
            raise StoreUnavailable("body store: 503 Slow Down")
        return self.inner.get(key)

    def open_stream(self, key: str) -> BodyStream:
        return self.inner.open_stream(key)

    def close(self) -> None:
        pass


def test_a_body_store_outage_is_waited_out_not_dead_lettered(env: Env) -> None:
    for i in range(3):
        env.publish(make_record(f"b-{i}"), body=chat_body())
    flaky = FlakyBodies(env.bodies)
    flaky.down.set()
    env.bodies = flaky
    runner = env.runner(max_attempts=1)
    committed: list[int] = []
    worker = threading.Thread(target=lambda: committed.append(runner.run_once()))
    worker.start()
    wait_for(lambda: flaky.failures >= 3)
    assert env.uncommitted() == 3
    flaky.down.clear()
    worker.join(timeout=10)
    assert committed == [3]
    assert env.records.count_requests(None) == 3
    assert runner.stats.dead_lettered == 0 and runner.stats.retries == 0


class FlakyDlq:
    """The real embedded producer behind a switch that makes the queue refuse publishes."""

    def __init__(self, inner: ReportingProducer) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.failures = 0

    def publish(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        if self.down.is_set():
            self.failures += 1
            raise QueueError("embedded queue: database is locked")
        self.inner.publish(topic, key, value, headers)

    def publish_batch(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.inner.publish_batch(topic, items)

    def flush(self, timeout_s: float) -> int:
        return self.inner.flush(timeout_s)

    def take_failed(self) -> list[Failed]:
        return self.inner.take_failed()

    def close(self) -> None:
        pass


def test_offsets_wait_until_the_dead_letters_are_durable(env: Env) -> None:
    env.publish_raw(b"garbage")
    env.publish(make_record("ok"), body=chat_body())
    dlq = FlakyDlq(env.producer)
    dlq.down.set()
    runner = BatchRunner(
        env.consumer,
        dlq,
        build_chain(env.settings, env.records, env.bodies),
        [env.records],
        RunnerConfig.from_settings(env.settings),
    )
    worker = threading.Thread(target=runner.run_once)
    worker.start()
    wait_for(lambda: dlq.failures >= 2)
    assert env.uncommitted() == 2
    dlq.down.clear()
    worker.join(timeout=10)
    assert env.uncommitted() == 0
    (letter,) = env.dead_letters(expect=1)
    assert letter.original == b"garbage"


class FlakyPolls(ForwardingConsumer):
    """The real embedded consumer behind a switch that makes polling fail (a queue outage)."""

    def __init__(self, inner: GroupConsumer) -> None:
        super().__init__(inner)
        self.down = threading.Event()
        self.failures = 0

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Message]:
        if self.down.is_set():
            self.failures += 1
            raise QueueError("embedded queue: poll failed: disk I/O error")
        return self._inner.poll_batch(max_records, timeout_s)

    def close(self) -> None:
        pass  # the test's environment closes the real consumer


def test_a_queue_that_cannot_be_polled_is_waited_out(env: Env) -> None:
    env.publish(make_record("q-1"), body=chat_body())
    flaky = FlakyPolls(env.consumer)
    flaky.down.set()
    env.consumer = flaky
    runner = env.runner()
    stop = threading.Event()
    worker = threading.Thread(target=runner.run, args=(stop,))
    worker.start()
    try:
        wait_for(lambda: flaky.failures >= 3)
        assert worker.is_alive()
        flaky.down.clear()
        wait_for(lambda: runner.stats.processed == 1)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert env.row("q-1") is not None


# -- the second sink's write beside the records' commit (``consumer_overlap_sinks``) ------------
# It must write exactly what the sequential path writes (the ids the records store settled,
# claims included), once; a failure of the overlapped write must end as it would have without the
# overlap (written again, or dead-lettered as a refusal). The second sink keeps rows in memory
# and says which thread wrote them.


class SecondSink:
    """An in-memory sink after the records store; ``fail`` raises once on the next write."""

    name = "second"

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], RequestRow] = {}
        self.threads: list[str] = []
        self.fail: Exception | None = None
        self.refuse: set[str] = set()
        self.records_committed: list[bool] = []

    def write_batch(self, rows: Sequence[RequestRow]) -> None:
        self.threads.append(threading.current_thread().name)
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        refused = {r.request_id: "refused" for r in rows if r.request_id in self.refuse}
        for row in rows:
            if row.request_id not in refused:
                self.rows[(row.org_id, row.request_id)] = msgspec.structs.replace(row)
        if refused:
            raise PoisonRows(refused)

    def close(self) -> None:
        pass


@pytest.fixture
def second() -> SecondSink:
    return SecondSink()


def _publish(env: Env) -> None:
    env.publish(make_record("a"), body=chat_body())
    env.publish(make_record("b"), body=chat_body())
    # a different call claiming "a": the records store moves it to a fresh id
    other = msgspec.structs.replace(
        make_record("a"), target_url="https://api.openai.com/v1/chat/completions?x=1"
    )
    env.publish(other)


def _stored(env: Env) -> dict[tuple[str, str], RequestRow]:
    return {(r.org_id, r.request_id): r for r in env.records.recent_requests(None, 100)}


def test_the_second_sink_writes_while_the_records_commit_and_gets_the_settled_ids(
    env: Env, second: SecondSink
) -> None:
    _publish(env)
    runner = env.runner(sinks=[env.records, second])
    assert drain(runner) == 3
    stored = _stored(env)
    assert len(stored) == 3
    assert any(CLAIMED_REQUEST_ID in r.properties for r in stored.values())
    assert second.rows == stored  # the same rows, under the ids the claims settled
    assert second.threads == ["llmtap-sink-alongside"]  # once, beside the records' commit
    assert runner.stats.dead_lettered == 0 and env.uncommitted() == 0


def test_without_the_overlap_the_sinks_write_one_after_the_other(
    env: Env, second: SecondSink
) -> None:
    _publish(env)
    runner = env.runner(sinks=[env.records, second], overlap_sinks=False)
    assert drain(runner) == 3
    assert second.rows == _stored(env)
    assert second.threads == [threading.current_thread().name]


def test_an_overlapped_write_that_fails_is_written_again_the_usual_way(
    env: Env, second: SecondSink
) -> None:
    _publish(env)
    second.fail = StoreUnavailable("second store: connection refused")
    runner = env.runner(sinks=[env.records, second])
    assert drain(runner) == 3
    assert second.threads == ["llmtap-sink-alongside", threading.current_thread().name]
    assert second.rows == _stored(env)
    assert runner.stats.dead_lettered == 0 and env.uncommitted() == 0


def test_a_row_the_second_sink_refuses_is_dead_lettered_as_without_the_overlap(
    env: Env, second: SecondSink
) -> None:
    _publish(env)
    second.refuse = {"b"}
    runner = env.runner(sinks=[env.records, second])
    assert drain(runner) == 3
    (letter,) = env.dead_letters(expect=1)
    assert letter.stage == "sink:second" and letter.request_id == "b"
    assert {key[1] for key in second.rows} == {key[1] for key in _stored(env)} - {"b"}
    assert env.uncommitted() == 0
