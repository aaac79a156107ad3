"""What a mapper hands the publisher: one record and the bodies it refers to."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmtap.record import LogRecord


@dataclass(slots=True)
class Body:
    """One body to write to the body store under its own key."""

    key: str
    data: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class Ingested:
    record: LogRecord
    bodies: list[Body] = field(default_factory=list)
