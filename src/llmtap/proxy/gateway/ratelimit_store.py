"""Where rate-limit counters live: the port, and what a check asks and answers.

A check is all-or-nothing over one or more buckets (a key's policy and the call's header policy
are checked together): the call passes only if every bucket has room, and only then is each one
charged. Both stores do the whole check in one atomic step — a SQLite ``BEGIN IMMEDIATE``
transaction shared by every proxy process on the machine, or one Lua script in Redis — so two
proxy processes can never both take the last unit of a budget.

Windows are fixed and start at a bucket's first charge: the budget is ``limit`` units until
``window`` after that, then it starts afresh (``reset`` says when).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llmtap.errors import LlmtapError


class LimiterUnavailable(LlmtapError):
    """The counters cannot be read or written (Redis away, the file locked too long)."""

    retriable = True


@dataclass(frozen=True, slots=True)
class BucketCheck:
    key: str
    """The bucket's store key (fixed length: a digest of who and what it counts)."""
    limit: int
    window_ms: int
    need: int
    """Units that must be left for the call to pass."""
    take: int
    """Units charged when it passes (0: charged after the call, for cents)."""


@dataclass(frozen=True, slots=True)
class BucketState:
    used: int
    """Units used in the current window, after this check."""
    reset_ms: int
    """Milliseconds until the window ends (the budget starts afresh)."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    states: tuple[BucketState, ...]


class LimiterStore(Protocol):
    def start(self) -> None:
        """Get ready in the background (never blocks the caller)."""

    def acquire_nowait(self, checks: Sequence[BucketCheck]) -> Decision | None:
        """The check right now if it can be done without waiting (a local file whose lock is
        free); None: use ``acquire``."""

    async def acquire(self, checks: Sequence[BucketCheck]) -> Decision:
        """Check every bucket and, when all have room, charge each; ``LimiterUnavailable``."""

    async def charge(self, key: str, amount: int, window_ms: int) -> None:
        """Add ``amount`` to a bucket after the call (its real cost); ``LimiterUnavailable``."""

    async def aclose(self) -> None:
        """Finish what is queued and release the connections (at proxy shutdown)."""
