"""At most ``api_query_concurrency`` searches and metrics queries run at once in this process.

The backend runs the consumer beside the API: without a bound, a few heavy queries (chDB parsing
and scanning, text search reading bodies) take every core and the log falls behind. A query that
finds no free slot within ``api_query_wait_s`` is answered 503 with ``Retry-After``, and so is
one that arrives while ``api_query_max_waiting`` others already wait: each waiter holds one of the
server's worker threads, and a pile of them would delay every other request (key checks,
ingestion) of every organization.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class QueryBusy(Exception):
    """Every query slot stayed taken for the whole wait: try again later (503)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the API is busy with other queries; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class QueryGate:
    def __init__(self, slots: int, wait_s: float, max_waiting: int = 8) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._wait_s = wait_s
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Queries waiting for a slot now."""
        with self._lock:
            return self._waiting

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block; ``QueryBusy`` if none frees up in time."""
        if self._slots.acquire(blocking=False):
            got = True
        else:
            with self._lock:
                if self._waiting >= self._max_waiting:
                    raise QueryBusy(max(1, math.ceil(self._wait_s)))
                self._waiting += 1
            try:
                got = self._slots.acquire(timeout=self._wait_s)
            finally:
                with self._lock:
                    self._waiting -= 1
        if not got:
            raise QueryBusy(max(1, math.ceil(self._wait_s)))
        try:
            yield
        finally:
            self._slots.release()
