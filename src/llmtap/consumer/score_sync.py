"""ScoreSync: sends scores from the records store, where the API writes them, to the analytics
store, where metrics read them.

The records store is the scores' source of truth; each score there is ``synced`` once the
analytics store has its current value. This loop reads the unsynced ones, inserts them (one
insert per round, idempotent: the analytics table keeps the newest version of each name) and
marks them synced unless they changed meanwhile. An analytics outage only delays metrics: the
scores wait, unsynced, and go when it is back. The same loop deletes, hourly, pending scores
whose call never arrived (``scores_pending_ttl_days``).

Several consumers may run it at once (distributed): they may send a score twice, which the
analytics table collapses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from llmtap.errors import LlmtapError
from llmtap.stores.scores import StoredScore

log = logging.getLogger(__name__)

ROUND = 1000
"""Scores per read and insert."""
PRUNE_EVERY_S = 3600.0


class ScoreSource(Protocol):
    """The records store's score table (``stores/records/scores.ScoreTable``)."""

    def unsynced(self, limit: int) -> list[StoredScore]: ...

    def mark_synced(self, sent: Sequence[StoredScore]) -> None: ...

    def prune_pending(self, older_than_unix_ms: float) -> int: ...


class ScoreSink(Protocol):
    """The analytics store (``AnalyticsStore.write_scores``)."""

    def write_scores(self, scores: Sequence[StoredScore]) -> None: ...


class ScoreSync:
    def __init__(
        self,
        source: ScoreSource,
        sink: ScoreSink,
        *,
        interval_s: float,
        pending_ttl_s: float,
    ) -> None:
        self._source = source
        self._sink = sink
        self._interval_s = interval_s
        self._pending_ttl_s = pending_ttl_s
        self._next_prune = 0.0
        self.sent = 0
        """Scores sent to the analytics store since start."""

    def sync_once(self) -> int:
        """Send every unsynced score (in rounds); how many were sent."""
        sent = 0
        while True:
            batch = self._source.unsynced(ROUND)
            if not batch:
                break
            self._sink.write_scores(batch)
            self._source.mark_synced(batch)
            sent += len(batch)
            if len(batch) < ROUND:
                break
        self.sent += sent
        return sent

    def prune_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        pruned = self._source.prune_pending(time.time() * 1000.0 - self._pending_ttl_s * 1000.0)
        if pruned:
            log.info("deleted %d pending score(s) whose call never arrived", pruned)

    def run(self, stop: threading.Event) -> None:
        """Sync every ``interval_s`` until ``stop``; a store that fails is retried next time."""
        failures = 0
        while not stop.wait(self._interval_s if not failures else min(30.0, 2.0**failures)):
            try:
                self.sync_once()
                self.prune_if_due()
            except LlmtapError as exc:
                failures += 1
                log.log(
                    logging.WARNING if failures == 1 or failures % 10 == 0 else logging.DEBUG,
                    "scores not sent to the analytics store yet (%s: %s); retry %d",
                    type(exc).__name__,
                    exc,
                    failures,
                )
            else:
                failures = 0
