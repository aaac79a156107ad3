"""The proxy's Kafka producer recovers from what would otherwise stall it until a restart: a
fatal librdkafka error, and a delivery-report poll that raised.

librdkafka cannot be made to raise a fatal error from Python (its test hook is not exposed), so
the client is replaced by a fake that behaves as librdkafka does after one: the error callback
reports it with the fatal flag, ``produce`` raises ``_FATAL`` (without the flag) for good, and
the messages it still holds are only handed back by ``purge``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from llmtap.errors import QueueError
from llmtap.queue import kafka_producer
from llmtap.queue.kafka_producer import KafkaProducer
from support.probes import wait_for

Report = Callable[[KafkaError | None, Any], None]


class FakeMessage:
    def __init__(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._topic, self._key, self._value = topic, key, value

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value


class FakeClient:
    """Holds every message (no broker) until purged; ``broken`` makes it fatally failed."""

    made: list[FakeClient] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.error_cb: Callable[[KafkaError], None] = config["error_cb"]
        self.held: list[tuple[FakeMessage, Report]] = []
        self.reports: list[tuple[FakeMessage, Report, KafkaError]] = []
        self.broken = False
        self.closed = False
        self.poll_errors = 0
        """How many of the next polls raise (as a callback's exception does)."""
        FakeClient.made.append(self)

    def break_fatally(self) -> None:
        self.broken = True
        self.error_cb(KafkaError(KafkaError._FATAL, "fenced by a newer producer", fatal=True))

    def produce(
        self, topic: str, value: bytes, key: bytes | None, headers: Any, on_delivery: Report
    ) -> None:
        if self.broken:
            raise KafkaException(KafkaError(KafkaError._FATAL, "fatal error"))
        self.held.append((FakeMessage(topic, key, value), on_delivery))

    def time_out(self) -> None:
        """Report every held message timed out, as a client that delivers nothing does."""
        timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
        self.reports += [(msg, report, timed_out) for msg, report in self.held]
        self.held = []

    def purge(self) -> None:
        purged = KafkaError(KafkaError._PURGE_QUEUE)
        self.reports += [(msg, report, purged) for msg, report in self.held]
        self.held = []

    def poll(self, timeout: float) -> int:
        if self.poll_errors:
            self.poll_errors -= 1
            raise KafkaException(KafkaError(KafkaError._FAIL, "a callback raised"))
        if not self.reports:
            time.sleep(min(timeout, 0.01))  # librdkafka's poll blocks too: no busy loop
        served, self.reports = self.reports, []
        for msg, report, err in served:
            report(err, msg)
        return len(served)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return len(self.held)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.made = []
    monkeypatch.setattr(kafka_producer, "_Client", FakeClient)
    return FakeClient


def test_after_a_fatal_error_a_new_client_takes_over_and_nothing_is_lost(
    fake_client: type[FakeClient],
) -> None:
    producer = KafkaProducer({"bootstrap.servers": "127.0.0.1:1"})
    try:
        producer.publish_batch("logs", [(b"a", b"1"), (b"b", b"2")])
        first = fake_client.made[0]
        first.break_fatally()

        producer.publish("logs", b"c", b"3")  # goes to a new client

        assert len(fake_client.made) == 2 and first.closed
        assert [m.key() for m, _ in fake_client.made[1].held] == [b"c"]
        # what the broken client still held comes back to be spooled
        assert producer.take_failed() == [("logs", b"a", b"1"), ("logs", b"b", b"2")]
        assert producer.renewals == 1
    finally:
        producer.close(timeout_s=0)


def test_a_fatal_produce_refuses_that_message_and_the_next_goes_to_a_new_client(
    fake_client: type[FakeClient],
) -> None:
    producer = KafkaProducer({"bootstrap.servers": "127.0.0.1:1"})
    try:
        # produce() raised _FATAL before the error callback said so
        fake_client.made[0].broken = True
        with pytest.raises(QueueError):
            producer.publish("logs", b"a", b"1")
        producer.publish("logs", b"b", b"2")
        assert len(fake_client.made) == 2
        assert [m.key() for m, _ in fake_client.made[1].held] == [b"b"]
    finally:
        producer.close(timeout_s=0)


def test_flush_after_a_fatal_error_does_not_wait_on_the_broken_client(
    fake_client: type[FakeClient],
) -> None:
    producer = KafkaProducer({"bootstrap.servers": "127.0.0.1:1"})
    try:
        producer.publish("logs", b"a", b"1")
        fake_client.made[0].break_fatally()
        # the spool replay waits for "nothing in flight": a dead client's messages never leave
        assert producer.flush(0) == 0
        assert producer.take_failed() == [("logs", b"a", b"1")]
    finally:
        producer.close(timeout_s=0)


def test_the_delivery_reports_are_still_served_after_a_poll_raised(
    fake_client: type[FakeClient],
) -> None:
    producer = KafkaProducer({"bootstrap.servers": "127.0.0.1:1"})
    try:
        client = fake_client.made[0]
        client.poll_errors = 1
        wait_for(lambda: client.poll_errors == 0, timeout_s=5, what="the failing poll")
        producer.publish("logs", b"a", b"1")
        client.purge()  # reports a failure, served only by the background poller
        wait_for(producer.take_failed, timeout_s=5, what="the failed delivery reported")
    finally:
        producer.close(timeout_s=0)


def test_a_client_whose_deliveries_only_time_out_is_replaced(
    fake_client: type[FakeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a broker restart under load a real client was seen delivering nothing for over a
    minute, reporting no error, every record timing out into the spool (a new one delivered)."""
    monkeypatch.setattr(kafka_producer, "STUCK_S", 0.2)
    producer = KafkaProducer({"bootstrap.servers": "127.0.0.1:1"})
    try:
        stuck = fake_client.made[0]
        producer.publish("logs", b"a", b"1")
        stuck.time_out()
        wait_for(producer.take_failed, timeout_s=5, what="the first timeout reported")
        producer.publish("logs", b"b", b"2")
        assert len(fake_client.made) == 1, "one timeout is not a stall"
        time.sleep(0.25)  # the stall lasting is the condition, not a wait
        stuck.time_out()
        wait_for(producer.take_failed, timeout_s=5, what="the second timeout reported")
        producer.publish("logs", b"c", b"3")  # goes to a new client
        assert len(fake_client.made) == 2 and stuck.closed
        assert producer.renewals == 1
        assert [m.key() for m, _ in fake_client.made[1].held] == [b"c"]
    finally:
        producer.close(timeout_s=0)


def test_a_delivery_between_timeouts_keeps_the_client(
    fake_client: type[FakeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka_producer, "STUCK_S", 0.2)
    producer = KafkaProducer({"bootstrap.servers": "127.0.0.1:1"})
    try:
        client = fake_client.made[0]
        producer.publish("logs", b"a", b"1")
        client.time_out()
        wait_for(producer.take_failed, timeout_s=5, what="the first timeout reported")
        producer.publish("logs", b"b", b"2")
        (msg, report) = client.held.pop()
        report(None, msg)  # delivered: the client works
        time.sleep(0.25)  # the stall lasting is the condition, not a wait
        producer.publish("logs", b"c", b"3")
        client.time_out()
        wait_for(producer.take_failed, timeout_s=5, what="the next timeout reported")
        producer.publish("logs", b"d", b"4")
        assert len(fake_client.made) == 1 and producer.renewals == 0
    finally:
        producer.close(timeout_s=0)
