"""What one record carries through the handler chain.

The runner decodes the message into ``record``, builds ``row`` from it (``RowBuilder``), then
runs the handlers in order; each reads what earlier ones left and fills more of ``row``:

    authenticate -> load bodies -> parse request -> parse response (per provider) -> cost

A handler raises ``PoisonRecord`` (or any non-retriable ``LlmtapError``) for input that can never
be processed, and a retriable ``LlmtapError`` for a passing failure (retried, then dead-lettered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmtap.queue.port import Message
from llmtap.record import LogRecord
from llmtap.stores.records.outbox import Delivery, TargetSpec
from llmtap.stores.row import RequestRow


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A delivery a handler wants once the call is stored: ``render`` makes it from the row the
    records store kept (whose request id may have been settled to a fresh one, invariant 13)."""

    render: Callable[[RequestRow], Delivery]
    target: TargetSpec | None = None
    """An endpoint to create on first use (a PostHog project); None for a configured webhook."""


@dataclass(slots=True)
class Context:
    message: Message
    record: LogRecord
    row: RequestRow
    request_body: bytes | None = None
    response_body: bytes | None = None
    request_json: Any = None
    """The parsed request body when it is JSON (``None`` otherwise)."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Scratch space for handlers further down the chain."""
    deliveries: list[PendingDelivery] = field(default_factory=list)
    """What the export handlers (webhooks, PostHog) enqueue after the sinks took the batch."""


class Handler(Protocol):
    name: str

    def __call__(self, ctx: Context) -> None: ...
