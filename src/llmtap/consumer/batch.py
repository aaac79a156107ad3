"""One batch in hand: its records, how often each failed, the good ones and the dead letters.

Bookkeeping for ``consumer.runner``; nothing here touches the queue or a store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmtap.consumer.context import PendingDelivery
from llmtap.consumer.dlq import DeadLetter, dead_letter_for
from llmtap.queue.port import Message
from llmtap.record import LogRecord
from llmtap.stores.row import RequestRow

log = logging.getLogger("llmtap.consumer.runner")

RowKey = tuple[str, str, str | None]
"""(org id, request id, record digest): one record's row; the sinks are idempotent on it."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Item:
    index: int
    message: Message
    record: LogRecord | None = None
    row: RequestRow | None = None
    deliveries: list[PendingDelivery] = field(default_factory=list)
    stage: str = "decode"
    attempts: int = 0
    first_failure_ms: int = 0
    last_failure_ms: int = 0

    def failed(self) -> None:
        now = _now_ms()
        self.attempts += 1
        self.first_failure_ms = self.first_failure_ms or now
        self.last_failure_ms = now


@dataclass(slots=True)
class Batch:
    messages: Sequence[Message]
    good: list[Item] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    written: int = 0
    """Messages whose row every sink took."""

    def dead_letter(self, item: Item, error: BaseException) -> None:
        if item.attempts == 0:
            item.failed()
        self.dead.append(
            dead_letter_for(
                item.message,
                error,
                stage=item.stage,
                attempts=item.attempts,
                first_failure_unix_ms=item.first_failure_ms,
                last_failure_unix_ms=item.last_failure_ms,
                request_id=item.record.request_id if item.record else None,
            )
        )
        log.warning(
            "dead-lettering %s/%d/%d (request %s) at %s after %d attempt(s): %s: %s",
            item.message.topic,
            item.message.partition,
            item.message.offset,
            item.record.request_id if item.record else "?",
            item.stage,
            item.attempts,
            type(error).__name__,
            error,
        )
