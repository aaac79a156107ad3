"""What one call's attempts were, kept on its exchange for the record (``proxy/capture.py``).

Written on the loop while the call runs, read by the shipper thread only after the exchange is
finished (nothing writes it after that: a pending retry finds the exchange finished and stops).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmtap.proxy.routing import Upstream


@dataclass(slots=True)
class AttemptNote:
    upstream: Upstream
    path: bytes
    fallback_index: int | None
    start_ns: int
    end_ns: int = 0
    """When its answer's head came, or it failed (0: cut off while running)."""
    status: int = 0
    error: str | None = None
    replayed: bool = False
    """Sent a second time on a fresh connection (its pooled one had gone stale)."""


@dataclass(slots=True)
class AttemptLog:
    notes: list[AttemptNote] = field(default_factory=list)
    fallback_index: int | None = None
    """Which ``Helicone-Fallbacks`` target answered the client (None: no fallbacks)."""

    @property
    def attempts(self) -> int:
        """Times the call was sent upstream."""
        return sum(2 if note.replayed else 1 for note in self.notes)
