"""The queue port: what the proxy publishes to and the consumer reads from.

Adapters (``sqlite://`` embedded, ``kafka://``) implement these protocols;
``queue.factory.open_producer`` / ``open_consumer`` pick one by URL. Semantics follow Kafka's: topics split into partitions by key, per-partition
monotonic offsets, consumer-group committed offsets meaning "next offset to read".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llmtap.errors import QueueError


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: Mapping[str, bytes] = field(default_factory=dict)


class Producer(Protocol):
    def publish(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        """Hand one message to the queue without waiting on the network.

        Raises ``QueueError`` when the queue cannot take it now (the caller spools it).
        """

    def publish_batch(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Publish many (key, value) pairs; all-or-nothing for embedded, best-effort ordered for Kafka."""

    def flush(self, timeout_s: float) -> int:
        """Wait until handed messages are durable; returns how many are still pending."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll_batch(self, max_records: int, timeout_s: float) -> list[Message]:
        """Up to ``max_records`` messages after the group's position; waits at most ``timeout_s``."""

    def commit(self, messages: Sequence[Message]) -> None:
        """Commit ``last offset + 1`` per partition of these messages for the group."""

    def seek(self, partition: int, offset: int) -> None:
        """Move the group's position in one partition (replay)."""

    def close(self) -> None: ...


class PublishIncomplete(QueueError):
    """``publish_batch`` stopped part-way: the first ``accepted`` items were taken, the rest not.

    Only Kafka raises it (the embedded queue's batches are all-or-nothing); the caller spools
    ``items[accepted:]``.
    """

    def __init__(self, message: str, *, accepted: int) -> None:
        super().__init__(message)
        self.accepted = accepted


Failed = tuple[str, bytes | None, bytes]
"""A message the queue accepted but could not deliver: (topic, key, value), for the spool."""

OnRevoke = Callable[[Sequence[tuple[str, int]]], None]
"""Called with the (topic, partition) pairs a consumer is about to lose, before it loses them."""


class ReportingProducer(Producer, Protocol):
    """What both adapters offer beyond ``Producer``."""

    def take_failed(self) -> list[Failed]:
        """Messages whose asynchronous delivery failed since the last call (Kafka), oldest first.

        ``publish`` returning is not delivery for Kafka; the caller spools what comes back here so
        nothing is lost silently. The embedded adapter is synchronous and always returns ``[]``.
        """


class GroupConsumer(Consumer, Protocol):
    """What both adapters offer beyond ``Consumer``: replay by topic/time, lag, revocation hook."""

    def seek(self, partition: int, offset: int, topic: str | None = None) -> None:
        """``topic`` may be left out when the consumer reads a single topic."""

    def seek_to_time(self, timestamp_ms: int) -> None:
        """Move every partition to its first message at or after ``timestamp_ms`` (replay)."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages not yet committed by the group, per (topic, partition)."""

    def set_on_revoke(self, callback: OnRevoke | None) -> None:
        """Run ``callback`` before partitions are taken away, so the caller can commit first."""
