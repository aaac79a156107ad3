"""A ``GroupConsumer`` that hands every call on to another one.

The consumers that change what the runner sees (a replay's filter, the dead-letter re-drive, the
tests' fault switches) override the calls they change and inherit the rest from here, so a call
added to the port is forwarded everywhere by one change.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmtap.queue.port import GroupConsumer, Message, OnRevoke


class ForwardingConsumer:
    def __init__(self, inner: GroupConsumer) -> None:
        self._inner = inner

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Message]:
        return self._inner.poll_batch(max_records, timeout_s)

    def commit(self, messages: Sequence[Message]) -> None:
        self._inner.commit(messages)

    def seek(self, partition: int, offset: int, topic: str | None = None) -> None:
        self._inner.seek(partition, offset, topic)

    def seek_to_time(self, timestamp_ms: int) -> None:
        self._inner.seek_to_time(timestamp_ms)

    def lag(self) -> dict[tuple[str, int], int]:
        return self._inner.lag()

    def set_on_revoke(self, callback: OnRevoke | None) -> None:
        self._inner.set_on_revoke(callback)

    def close(self) -> None:
        self._inner.close()
