"""Each proxy process's memory of full buckets, in front of the shared store.

A hot answer is served from here with no store round trip (no thread hop for SQLite, no network
for Redis): that is what lets a hit cost less than a provider call at high concurrency. Only a
bucket whose every slot this process has seen is served from memory (so the random choice among
the n answers is the store's), and only for ``ttl_s`` after it was first remembered.

When that time is up, one call (``get`` answers it ``REFRESH``) asks the store again while the
others are still served the remembered answer, for at most ``grace_s`` more: a hot key then costs
one store round trip per ``ttl_s``, not one per call in flight at that moment (at 64 concurrent
calls, 64 Redis commands and connections every second). So an answer refreshed, or expired, in
the store is served from here at most ``ttl_s`` plus one store lookup (bounded by ``grace_s``)
longer. A refresh that does not find the bucket full again ``forget``s it. Bounded by
``max_bytes`` (least recently used first out).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from llmtap.proxy.gateway.cache_replay import Prepared


class _Refresh:
    """``get``'s answer to the one call that is to ask the store for an expired bucket."""

    __slots__ = ()


REFRESH: Final = _Refresh()


@dataclass(slots=True)
class _Bucket:
    until: float
    slots: dict[int, Prepared] = field(default_factory=dict)
    size: int = 0
    refresh_until: float = 0.0
    """Set while one call asks the store again: the others are served until then."""


class MemoryCache:
    def __init__(self, max_bytes: int, ttl_s: float, grace_s: float = 1.0) -> None:
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._grace_s = grace_s
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self._max_bytes > 0 and self._ttl_s > 0

    def get(self, key: str, bucket_size: int, rnd: int) -> Prepared | _Refresh | None:
        """A random answer of a full bucket remembered less than ``ttl_s`` ago (or being
        refreshed); ``REFRESH`` when the caller is to ask the store again; else None."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        slots = bucket.slots
        if len(slots) < bucket_size:
            return None
        if bucket.until <= time.monotonic():
            now = time.monotonic()
            if not bucket.refresh_until:
                bucket.refresh_until = now + self._grace_s
                return REFRESH
            if bucket.refresh_until <= now:  # the refresh never came back
                self._drop(key)
                return None
        self._buckets.move_to_end(key)
        if len(slots) == 1:
            return next(iter(slots.values()))
        return slots[sorted(slots)[rnd % len(slots)]]

    def add(self, key: str, answer: Prepared, size: int) -> None:
        """Remember one slot's answer (seen in a hit, or saved by this process); ``size`` is
        what it takes in memory (``prepared_size``). An expired bucket starts over with it."""
        if not self.enabled or size > self._max_bytes:
            return
        bucket = self._buckets.get(key)
        if bucket is None or bucket.until <= time.monotonic():
            if bucket is not None:
                self._drop(key)
            bucket = self._buckets[key] = _Bucket(time.monotonic() + self._ttl_s)
        if answer.idx in bucket.slots:
            return
        bucket.slots[answer.idx] = answer
        bucket.size += size
        self._bytes += size
        self._buckets.move_to_end(key)
        while self._bytes > self._max_bytes and self._buckets:
            self._drop(next(iter(self._buckets)))

    def forget(self, key: str) -> None:
        """A refresh found no answer to serve (a miss, a claim, a store failure): the
        remembered one is served no more."""
        self._drop(key)

    @staticmethod
    def prepared_size(answer: Prepared, stored: int) -> int:
        """An answer's share of ``max_bytes``: its stored form and its rendered head."""
        return stored + len(answer.head_lines or b"")

    def _drop(self, key: str) -> None:
        bucket = self._buckets.pop(key, None)
        if bucket is not None:
            self._bytes -= bucket.size
