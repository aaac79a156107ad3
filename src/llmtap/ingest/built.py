"""What a mapper hands the publisher: one record and the bodies it refers to."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmtap.proxy.capture import Body
from llmtap.record import LogRecord


@dataclass(frozen=True, slots=True)
class Ingested:
    record: LogRecord
    bodies: list[Body] = field(default_factory=list)
