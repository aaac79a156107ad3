"""The proxy's key check: a call carrying an llmtap key no organization has is refused (401).

Without it such a call was forwarded, answered, and then had no organization to be logged in
(docs/decisions/2026-12-01-unknown-keys.md). The check runs only for calls that carry
``Helicone-Auth``/``Llmtap-Auth``; plain calls never reach it.

Answers (known or unknown) are cached for ``auth_gate_ttl_s``. On a miss:

* a local records store (SQLite, the embedded install) is asked at once: an indexed lookup in a
  WAL database, tens of microseconds, so the call is checked exactly;
* a remote one (Postgres) is never asked on the event loop: the lookup is queued for a
  background thread and the call goes through this once (the consumer logs it in the default
  organization, flagged, if the key turns out unknown); later calls with the key hit the cache.

If the store cannot answer, the call goes through (fail open): refusing every keyed call because
the records store is down would turn a logging outage into a gateway outage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

from llmtap.errors import LlmtapError
from llmtap.keys import hash_key
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.metrics import ProxyMetrics

log = logging.getLogger("llmtap.proxy.auth")

_CACHE_MAX = 10_000
_PENDING_MAX = 1_000
_STOP = ""


class KeyLookup(Protocol):
    def org_for_key_hash(self, key_hash: str) -> str | None: ...


class AuthGate:
    def __init__(
        self, directory: KeyLookup, metrics: ProxyMetrics, *, ttl_s: float, local: bool
    ) -> None:
        self._directory = directory
        self._metrics = metrics
        self._ttl = ttl_s
        self._local = local
        self._known: dict[str, tuple[bool, float]] = {}
        """key hash -> (an organization has it, until when the answer holds)."""
        self._pending: set[str] = set()
        self._lookups: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def refuses(self, exchange: Exchange, auth: str) -> bool:
        """Answer 401 and return True when ``auth`` is known to be no organization's key."""
        key_hash = hash_key(auth)
        hit = self._known.get(key_hash)
        if hit is not None and hit[1] > time.monotonic():
            known: bool | None = hit[0]
        elif self._local:
            known = self._look_up(key_hash)
        else:
            known = None
            self._look_up_later(key_hash)
        if known is not False:
            return False
        self._metrics.refused += 1
        exchange.respond_error(
            401, "invalid_llmtap_key", "the llmtap key (Helicone-Auth) is unknown or revoked"
        )
        return True

    def close(self) -> None:
        if self._thread is not None:
            self._lookups.put(_STOP)
            self._thread.join(5.0)

    def _look_up(self, key_hash: str) -> bool | None:
        try:
            known = self._directory.org_for_key_hash(key_hash) is not None
        except LlmtapError as exc:
            log.warning("llmtap key check failed, the call goes through: %s", exc)
            return None
        if len(self._known) >= _CACHE_MAX:
            self._known.clear()
        self._known[key_hash] = (known, time.monotonic() + self._ttl)
        return known

    def _look_up_later(self, key_hash: str) -> None:
        if key_hash in self._pending or len(self._pending) >= _PENDING_MAX:
            return
        self._pending.add(key_hash)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llmtap-auth-gate", daemon=True)
            self._thread.start()
        self._lookups.put(key_hash)

    def _run(self) -> None:
        while (key_hash := self._lookups.get()) != _STOP:
            try:
                self._look_up(key_hash)
            finally:
                self._pending.discard(key_hash)
