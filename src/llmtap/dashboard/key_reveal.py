"""A new key (or webhook signing secret), held in this process for one showing after its
creation (POST/redirect/GET).

``POST /keys`` creates the key and redirects to ``/keys/new/<ticket>``; the first GET of that
URL by the same signed-in browser takes the key out and shows it; any later GET (a reload, Back,
another browser) finds nothing. A ticket not fetched within ``TTL_S`` is dropped, and at most
``MAX_PENDING`` are held: the plaintext key never stays in memory for long and is never written
anywhere. With several API processes behind one address, the GET must reach the process that
answered the POST (otherwise the page says the key cannot be shown, and it can be revoked).
A new webhook's secret (``POST /webhooks`` -> ``/webhooks/new/<ticket>``) goes the same way, in
its own ``Reveals``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

TTL_S = 120.0
MAX_PENDING = 1000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class NewWebhook:
    webhook_id: str
    url: str
    sample_rate: float
    property_filters: dict[str, str]
    secret: str


class Reveals(Generic[T]):
    """Tickets for one showing each, of what ``T`` is (a ``NewKey``, a new webhook)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, float, T]] = {}
        """ticket -> (the session's token hash, until when, what to show)."""

    def hold(self, session_token_hash: str, shown: T) -> str:
        ticket = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            for old, (_, until, _) in list(self._held.items()):
                if until <= now:
                    del self._held[old]
            while len(self._held) >= MAX_PENDING:
                del self._held[next(iter(self._held))]
            self._held[ticket] = (session_token_hash, now + TTL_S, shown)
        return ticket

    def take(self, session_token_hash: str, ticket: str) -> T | None:
        """What is held under ``ticket`` for this session, once; ``None`` after that."""
        with self._lock:
            held = self._held.get(ticket)
            if held is None or held[0] != session_token_hash:
                return None
            del self._held[ticket]
        return held[2] if held[1] > self._clock() else None
