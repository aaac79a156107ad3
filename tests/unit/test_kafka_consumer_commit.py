"""A Kafka consumer's commit never holds the consumer up for good.

In ``test_kafka_faults.py``'s broker outage under load, the commit issued as the broker went
away was seen (faulthandler stacks) still inside librdkafka's synchronous ``commit`` minutes later,
the client delivering nothing and reporting no error: every answered call was on the topic, a
fifth of them stored. librdkafka cannot be put in that state on demand, so fake clients stand in:
one whose commit completes only once the consumer has polled again (the commit must be bounded
and the loop must get back to polling), and one whose commit never comes back (the client must
be replaced, noticed by a later commit or by a poll alone).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from llmtap.errors import QueueError
from llmtap.queue import kafka_consumer
from llmtap.queue.kafka_consumer import RENEW_AFTER_TIMEOUTS, KafkaConsumer
from llmtap.queue.port import Message
from support.probes import wait_for


class RebalancingClient:
    """A consumer client whose commit waits until the consumer polls again."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.polled = threading.Event()
        self.committed: list[list[TopicPartition]] = []

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.polled.set()  # serves the lost-partitions callback: the group settles
        return []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert not asynchronous
        self.polled.clear()
        if not self.polled.wait(30):  # a bound only so a failing test ends
            raise AssertionError("the commit was never let through: nobody polled")
        self.committed.append(offsets)
        return offsets

    def close(self) -> None:
        pass


def message(offset: int) -> Message:
    return Message(topic="logs", partition=0, offset=offset, key=None, value=b"", timestamp_ms=0)


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> KafkaConsumer:
    monkeypatch.setattr(kafka_consumer, "_Client", RebalancingClient)
    return KafkaConsumer({}, "group", ["logs"], commit_timeout_s=0.2)


def test_a_commit_the_group_holds_up_fails_in_time_and_polling_lets_it_through(
    consumer: KafkaConsumer,
) -> None:
    client = consumer._client
    assert isinstance(client, RebalancingClient)
    done = threading.Event()
    outcome: list[Exception | None] = []

    def commit() -> None:
        try:
            consumer.commit([message(0)])
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 -- the test looks at what it was
            outcome.append(exc)
        done.set()

    threading.Thread(target=commit, daemon=True).start()
    assert done.wait(5), "the commit waited on the group (which waits on a poll) forever"
    assert isinstance(outcome[0], QueueError) and outcome[0].retriable

    # a second commit while the first still waits is refused, not queued behind it
    with pytest.raises(QueueError, match="still waiting"):
        consumer.commit([message(1)])

    consumer.poll_batch(10, 0.01)  # the group settles; the held commit goes through
    wait_for(lambda: len(client.committed) == 1, timeout_s=5, what="the held commit done")
    assert [tp.offset for tp in client.committed[0]] == [1]
    consumer.close()


class WedgedClient(RebalancingClient):
    """A client whose commit never comes back, whatever the caller does."""

    made: list[WedgedClient] = []

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.closed = threading.Event()
        WedgedClient.made.append(self)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        # Never back within the test. The bound only lets the daemon thread end, quietly: an
        # exception raised here later would surface in whichever test runs then.
        threading.Event().wait(30)
        return []

    def close(self) -> None:
        self.closed.set()


def test_a_client_whose_commit_never_comes_back_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    WedgedClient.made = []
    monkeypatch.setattr(kafka_consumer, "_Client", WedgedClient)
    consumer = KafkaConsumer({}, "group", ["logs"], commit_timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(QueueError, match="not confirmed"):
        consumer.commit([message(0)])
    with pytest.raises(QueueError, match="still waiting"):
        consumer.commit([message(0)])  # not yet: it may be a slow rebalance
    first = WedgedClient.made[0]
    wait_for(
        lambda: time.monotonic() - start >= RENEW_AFTER_TIMEOUTS * 0.5,
        timeout_s=5,
        what="the commit stuck long enough",
    )
    with pytest.raises(QueueError, match="replaced"):
        consumer.commit([message(0)])
    assert len(WedgedClient.made) == 2 and consumer._client is WedgedClient.made[1]
    assert first.closed.wait(5)  # closed aside, off the consumer's thread
    assert consumer.renewals == 1
    with pytest.raises(QueueError, match="not confirmed"):
        consumer.commit([message(0)])  # the new client is asked, not the old one


def test_a_wedged_client_is_replaced_by_polling_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wedged client delivers nothing, so no further commit comes to notice it."""
    WedgedClient.made = []
    monkeypatch.setattr(kafka_consumer, "_Client", WedgedClient)
    consumer = KafkaConsumer({}, "group", ["logs"], commit_timeout_s=0.5)
    with pytest.raises(QueueError, match="not confirmed"):
        consumer.commit([message(0)])
    wait_for(
        lambda: consumer.poll_batch(10, 0.05) == [] and len(WedgedClient.made) == 2,
        timeout_s=10,
        what="a poll replacing the wedged client",
    )
    assert consumer.renewals == 1 and consumer._client is WedgedClient.made[1]


def test_the_revoke_hook_does_not_commit_behind_a_wedged_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebalance while the runner's commit is still out (after a broker restart): the revoke
    hook's inline commit, inside ``consume``, would wait behind it for good, and with it the
    poll that is to notice the wedge and replace the client. It must be refused at once."""
    WedgedClient.made = []
    monkeypatch.setattr(kafka_consumer, "_Client", WedgedClient)
    consumer = KafkaConsumer({}, "group", ["logs"], commit_timeout_s=0.2)
    with pytest.raises(QueueError, match="not confirmed"):
        consumer.commit([message(0)])
    client = consumer._client
    outcome: list[BaseException | None] = []

    def on_revoke(partitions: Any) -> None:
        try:
            consumer.commit([message(1)])
            outcome.append(None)
        except QueueError as exc:
            outcome.append(exc)

    consumer.set_on_revoke(on_revoke)
    hook = threading.Thread(
        target=consumer._revoked, args=(client, [TopicPartition("logs", 0)]), daemon=True
    )
    started = time.monotonic()
    hook.start()
    hook.join(5)
    assert not hook.is_alive(), "the revoke hook waited behind the wedged commit"
    assert time.monotonic() - started < 5
    assert isinstance(outcome[0], QueueError) and "still waiting" in str(outcome[0])
    # polling is free to notice the wedge and replace the client
    wait_for(
        lambda: consumer.poll_batch(10, 0.05) == [] and consumer.renewals == 1,
        timeout_s=10,
        what="a poll replacing the wedged client",
    )


class WedgedPollClient(RebalancingClient):
    """A client whose ``consume`` does not come back past its timeout (seen after a broker
    restart, librdkafka serving a rebalance that waits on a commit that never came back)."""

    made: list[WedgedPollClient] = []

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.wedged = len(WedgedPollClient.made) == 0  # only the first client is broken
        self.closed = threading.Event()
        WedgedPollClient.made.append(self)

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        if self.wedged:
            threading.Event().wait(30)  # a bound only so the daemon thread ends
        return []

    def close(self) -> None:
        self.closed.set()


def test_a_poll_wedged_inside_the_client_is_given_up_and_the_client_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    WedgedPollClient.made = []
    monkeypatch.setattr(kafka_consumer, "_Client", WedgedPollClient)
    # its close waits this long for the consume still running in it, then closes regardless
    monkeypatch.setattr(kafka_consumer, "CLOSE_AFTER_POLL_S", 1.5)
    consumer = KafkaConsumer({}, "group", ["logs"], commit_timeout_s=0.2)
    started = time.monotonic()
    assert consumer.poll_batch(10, 0.05) == []  # the first client's consume never returns
    waited = time.monotonic() - started
    assert waited < 5, "the loop waited on the wedged poll"
    assert waited >= 0.05 + RENEW_AFTER_TIMEOUTS * 0.2 - 0.01  # not before its bound
    assert consumer.renewals == 1 and consumer._client is WedgedPollClient.made[1]
    assert not WedgedPollClient.made[0].closed.wait(0.1)  # not under the running consume...
    assert WedgedPollClient.made[0].closed.wait(5)  # ...but closed aside after a while
    # the new client serves polls as usual
    assert consumer.poll_batch(10, 0.05) == [] and consumer.renewals == 1
    consumer.close()
    assert WedgedPollClient.made[1].closed.is_set()


def test_a_poll_slower_than_its_timeout_but_within_the_bound_keeps_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebalance served inside ``consume`` may take it past its timeout: not a wedge."""

    class SlowClient(RebalancingClient):
        def consume(self, num_messages: int, timeout: float) -> list[Any]:
            threading.Event().wait(timeout + 0.2)
            return []

    monkeypatch.setattr(kafka_consumer, "_Client", SlowClient)
    consumer = KafkaConsumer({}, "group", ["logs"], commit_timeout_s=0.5)
    first = consumer._client
    assert consumer.poll_batch(10, 0.05) == []
    assert consumer.renewals == 0 and consumer._client is first
    consumer.close()
