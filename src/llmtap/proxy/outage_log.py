"""What an operator reads while the queue is away: a few lines, not one per attempt or record.

One WARNING when records start going to the disk spool (with the reason), a summary every
``summary_every_s`` while the queue is still away (records spooled so far, records waiting), and
one line when the spool has drained into the queue again (how many records the outage spooled,
how long it lasted). Called from the shipper thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("llmtap.shipper")

SUMMARY_EVERY_S = 30.0


class OutageLog:
    def __init__(
        self,
        summary_every_s: float = SUMMARY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every_s = summary_every_s
        self._clock = clock
        self._since: float | None = None
        self._spooled = 0
        self._next_summary = 0.0

    @property
    def active(self) -> bool:
        return self._since is not None

    def spooled(self, count: int, reason: str, waiting: int) -> None:
        """``count`` records went to the spool because the queue refused them (``reason``)."""
        if count <= 0:
            return
        now = self._clock()
        if self._since is None:
            self._since = now
            self._spooled = count
            self._next_summary = now + self._every_s
            log.warning("queue unreachable, spooling records to disk until it is back: %s", reason)
            return
        self._spooled += count
        self.still_away(waiting)

    def still_away(self, waiting: int) -> None:
        """The queue was tried again and is still away: a summary when one is due."""
        now = self._clock()
        if self._since is None or now < self._next_summary:
            return
        self._next_summary = now + self._every_s
        log.warning(
            "queue still unreachable after %.0fs: %d record(s) spooled during the outage, "
            "%d waiting in the spool",
            now - self._since,
            self._spooled,
            waiting,
        )

    def drained(self) -> None:
        """Every spooled record is in the queue again (confirmed): the outage is over."""
        if self._since is None:
            return
        log.warning(
            "queue reachable again after %.0fs: %d record(s) spooled during the outage, "
            "all replayed",
            self._clock() - self._since,
            self._spooled,
        )
        self._since = None
        self._spooled = 0
