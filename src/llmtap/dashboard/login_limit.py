"""Failed sign-ins per client address, in memory, to slow down guessing keys.

An llmtap key holds 256 random bits, so guessing cannot succeed; the limit is about not letting
one client make the process hash and look up keys as fast as it can send them. The table is
bounded (``MAX_ADDRESSES``, oldest dropped first), so a flood from many addresses costs a fixed
amount of memory; each process counts on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

MAX_ADDRESSES = 10_000


class LoginLimiter:
    def __init__(self, max_failures: int, window_s: float) -> None:
        self._max = max_failures
        self._window_s = window_s
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """address -> (start of its window, failures in it)."""

    def retry_after_s(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it may now."""
        now = time.monotonic()
        with self._lock:
            entry = self._failures.get(address)
            if entry is None:
                return None
            start, count = entry
            if now - start >= self._window_s:
                del self._failures[address]
                return None
            if count < self._max:
                return None
            return max(1, math.ceil(start + self._window_s - now))

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            start, count = self._failures.pop(address, (now, 0))
            if now - start >= self._window_s:
                start, count = now, 0
            self._failures[address] = (start, count + 1)
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)
