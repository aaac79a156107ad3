"""The sink port: where the consumer writes processed rows, in order, per batch.

Every sink is idempotent on ``request_id`` (a redelivered row replaces, never adds). A transient
outage raises ``StoreUnavailable`` (the consumer waits and retries the whole batch, offsets not
committed); a row the store can never take raises ``PoisonRows`` naming those rows, so the consumer
dead-letters only them and retries the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llmtap.errors import StoreError
from llmtap.stores.row import RequestRow


class PoisonRows(StoreError):
    """Some rows were refused for good; ``reasons`` maps their request ids to why."""

    retriable = False

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__(f"{len(reasons)} row(s) refused: {reasons}")
        self.reasons = reasons


class Sink(Protocol):
    name: str

    def write_batch(self, rows: Sequence[RequestRow]) -> None: ...

    def close(self) -> None: ...
