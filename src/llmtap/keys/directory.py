"""Which organization an llmtap key belongs to: one cache and one rule for every process.

The API (each request), the proxy (its key check and each record's organization) and the
consumer (records the proxy could not resolve) ask the records store the same question. Every
answer, an organization or "no organization has this key", is kept for ``ttl_s``
(``settings.key_cache_ttl_s``): a revoked key stops working everywhere within ``ttl_s``, and a
burst of calls with one key, known or bogus, costs one lookup per ``ttl_s``. Caching "unknown"
cannot delay a new key: its hash cannot have been asked about before it existed. A lookup that
fails (the store is away) is not remembered; the error goes to the caller.

``org_for_key_hash`` may block on the store. ``org_nowait`` is for the proxy's event loop, which
must never wait on a remote database: on a miss it asks at once only when lookups are local
(``inline``: an indexed read of a SQLite file in WAL mode, ~150 µs), otherwise it queues the
lookup for one background thread and answers ``PENDING`` until the answer is in. Once a key is
known, an expired answer is still given while its refresh runs in the background: a key's rate
limit must not lapse for a moment every ``ttl_s`` (a revoked key is refused once the refresh is
in, a few milliseconds later).

``grant_nowait`` gives the whole ``KeyGrant`` (the proxy's rate limits read the key's policy).
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable

from llmtap.errors import LlmtapError
from llmtap.keys import KeyGrant

log = logging.getLogger("llmtap.keys")

KeyLookup = Callable[[str], KeyGrant | str | None]
"""key hash -> its grant, or just its organization id (None: no organization has it); raises
``LlmtapError``."""

_MAX_ENTRIES = 10_000
_MAX_PENDING = 1_000
_STOP = ""


class Pending(enum.Enum):
    PENDING = "pending"


PENDING = Pending.PENDING
"""``org_nowait``'s answer while the store has not been asked yet (or could not answer)."""


class KeyDirectory:
    """Key hash -> organization, cached for ``ttl_s``; safe to share between threads."""

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        ttl_s: float,
        inline: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl_s
        self._inline = inline
        self._clock = clock
        self._on_close = on_close
        self._lock = threading.Lock()
        self._known: dict[str, tuple[KeyGrant | None, float]] = {}
        """key hash -> (its grant or None, until when the answer holds)."""
        self._pending: set[str] = set()
        self._lookups: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def ttl_s(self) -> float:
        """How long an answer is trusted: the longest a revoked key keeps working."""
        return self._ttl

    def org_for_key_hash(self, key_hash: str) -> str | None:
        """The organization owning the (unrevoked) key; may wait for the store, whose
        ``LlmtapError`` it raises."""
        grant = self.grant_for_key_hash(key_hash)
        return None if grant is None else grant.org_id

    def grant_for_key_hash(self, key_hash: str) -> KeyGrant | None:
        with self._lock:
            hit = self._known.get(key_hash)
        if hit is not None and hit[1] > self._clock():
            return hit[0]
        grant = self._look_up(key_hash)
        self._remember(key_hash, grant)
        return grant

    def org_nowait(self, key_hash: str) -> str | Pending | None:
        """Like ``org_for_key_hash`` without waiting on a remote store: ``PENDING`` when the
        answer is not known yet (looked up in the background) or the store cannot answer."""
        grant = self.grant_nowait(key_hash)
        return grant.org_id if isinstance(grant, KeyGrant) else grant

    def grant_nowait(self, key_hash: str) -> KeyGrant | Pending | None:
        """Like ``grant_for_key_hash`` without waiting on a remote store (see ``org_nowait``)."""
        with self._lock:
            hit = self._known.get(key_hash)
        if hit is not None and hit[1] > self._clock():
            return hit[0]
        if not self._inline:
            self._look_up_later(key_hash)
            return PENDING if hit is None else hit[0]
        try:
            grant = self._look_up(key_hash)
        except LlmtapError as exc:
            log.warning("llmtap key lookup failed: %s", exc)
            return PENDING
        self._remember(key_hash, grant)
        return grant

    def _look_up(self, key_hash: str) -> KeyGrant | None:
        found = self._lookup(key_hash)
        return KeyGrant(found) if isinstance(found, str) else found

    def close(self) -> None:
        """Stop the background lookups and release the store."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._lookups.put(_STOP)
            thread.join(5.0)
        if self._on_close is not None:
            self._on_close()

    def _remember(self, key_hash: str, grant: KeyGrant | None) -> None:
        until = self._clock() + self._ttl
        with self._lock:
            if len(self._known) >= _MAX_ENTRIES and key_hash not in self._known:
                self._known.clear()
            self._known[key_hash] = (grant, until)

    def _look_up_later(self, key_hash: str) -> None:
        with self._lock:
            if key_hash in self._pending or len(self._pending) >= _MAX_PENDING:
                return
            self._pending.add(key_hash)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="llmtap-key-lookups", daemon=True
                )
                self._thread.start()
        self._lookups.put(key_hash)

    def _run(self) -> None:
        while (key_hash := self._lookups.get()) != _STOP:
            try:
                self.grant_for_key_hash(key_hash)
            except LlmtapError as exc:
                log.warning("llmtap key lookup failed: %s", exc)
            finally:
                with self._lock:
                    self._pending.discard(key_hash)
