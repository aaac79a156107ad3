"""Who is calling: an llmtap key (``Authorization: Bearer sk-llmtap-...`` or ``Helicone-Auth``)
resolved to its organization through the records store.

Resolutions are cached for a few seconds so a dashboard polling the API does not hit the
database per call; a revoked key therefore stops working within ``ttl_s``. Unknown keys are not
cached (nothing to save, and a key created a moment ago must work at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from llmtap.keys import hash_key

DEFAULT_TTL_S = 5.0
_MAX_ENTRIES = 10_000


class Unauthorized(Exception):
    """No usable key: the API answers 401 with this message."""


class KeyResolver:
    def __init__(
        self,
        org_for_key_hash: Callable[[str], str | None],
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = org_for_key_hash
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def org_for(self, authorization: str | None, helicone_auth: str | None) -> str:
        """The caller's organization; ``Unauthorized`` when no valid key was sent."""
        raw = authorization or helicone_auth
        if not raw or not raw.strip():
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer sk-llmtap-...' (or Helicone-Auth)"
            )
        key_hash = hash_key(raw)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        org = self._lookup(key_hash)
        if org is None:
            raise Unauthorized("invalid or revoked API key")
        with self._lock:
            if len(self._cache) >= _MAX_ENTRIES:
                self._cache.clear()
            self._cache[key_hash] = (org, now + self._ttl_s)
        return org
