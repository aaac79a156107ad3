"""What one record carries through the handler chain.

The runner decodes the message into ``record``, builds ``row`` from it (``RowBuilder``), then
runs the handlers in order; each reads what earlier ones left and fills more of ``row``:

    authenticate -> load bodies -> parse request -> parse response (per provider) -> cost

A handler raises ``PoisonRecord`` (or any non-retriable ``LlmtapError``) for input that can never
be processed, and a retriable ``LlmtapError`` for a passing failure (retried, then dead-lettered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from llmtap.queue.port import Message
from llmtap.record import LogRecord
from llmtap.stores.row import RequestRow


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


class Handler(Protocol):
    name: str

    def __call__(self, ctx: Context) -> None: ...
