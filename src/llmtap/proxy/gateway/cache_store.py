"""Where cached answers live: the port, the bucket rule, and the answer's stored form.

A key names a bucket of ``n`` slots (``Helicone-Cache-Bucket-Max-Size``). A slot is free, being
filled (claimed by a call that went to the provider, until ``claim_ms``), or holds an answer
(until its max-age). ``begin`` decides, atomically across every process sharing the store, what
one call does (``decide``): the first ``n`` identical calls are misses that each claim a slot;
later ones are served a random filled slot, or wait while every slot is still being filled.
A call that fills a slot then ``put``s the answer or, when it is not cacheable, ``release``s the
claim so the next call fills it instead.

Adapters: SQLite in the data directory (``cache_sqlite``) and Redis (``cache_redis``), picked
by ``LLMTAP_CACHE_URL`` in ``open_cache_store``. Both raise ``CacheStoreError`` for an outage;
the gateway then lets the call through uncached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

from llmtap.errors import LlmtapError
from llmtap.settings import Settings

Action = Literal["hit", "fill", "wait", "miss"]


class CacheStoreError(LlmtapError):
    """The cache store could not answer (down, slow, corrupt): the call goes uncached."""

    retriable = True


class CacheFullError(CacheStoreError):
    """The embedded store is at ``cache_max_mb`` even after evicting: the answer is not cached
    (the store itself works: the cache is not skipped)."""

    retriable = False

    def __init__(self, message: str, evicted: int = 0) -> None:
        super().__init__(message)
        self.evicted = evicted
        """Answers evicted while trying to make room."""


@dataclass(frozen=True, slots=True)
class Begin:
    action: Action
    idx: int = 0
    """The slot served (``hit``) or claimed (``fill``)."""
    data: bytes = b""
    """The stored answer of a ``hit``."""


def decide(
    filled: list[int], busy: list[int], free: list[int], read: bool, save: bool, rnd: int
) -> tuple[Action, int]:
    """What one call does with a bucket whose slots are ``filled``, ``busy`` (being filled) or
    ``free``; ``rnd`` picks the slot served. The Redis script spells the same rule in Lua."""
    if read and filled and not (save and free):
        return "hit", filled[rnd % len(filled)]
    if save and free:
        return "fill", free[0]
    if read and busy:
        return "wait", 0
    if save:
        # save-only, every slot taken: refresh one at random
        taken = filled + busy
        return "fill", taken[rnd % len(taken)]
    return "miss", 0


class CachedResponse(msgspec.Struct, array_like=True):
    """An answer as the provider sent it: replayed byte for byte (streams as their SSE).

    Stored as a msgpack array: a change here needs ``cache_key.KEY_VERSION`` bumped, so entries
    written by an older llmtap are never read (a proxy would count each as a store failure)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    """Without hop-by-hop headers (framing is recomputed)."""
    chunked: bool
    body: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CachedResponse)


def encode_response(response: CachedResponse) -> bytes:
    return _encoder.encode(response)


def decode_response(data: bytes) -> CachedResponse:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CacheStoreError(f"unreadable cache entry: {exc}") from exc


class CacheStore(Protocol):
    async def begin(
        self, key: str, bucket: int, read: bool, save: bool, claim_ms: int, rnd: int
    ) -> Begin:
        """Decide one call's action and, for ``fill``, claim its slot for ``claim_ms``."""

    async def put(self, key: str, idx: int, data: bytes, ttl_ms: int) -> int:
        """Store an answer in slot ``idx`` (ends its claim), living ``ttl_ms``; the number of
        other answers evicted to make room (``CacheFullError``: none made enough)."""

    async def release(self, key: str, idx: int) -> None:
        """End a claim without an answer: the slot is free again."""

    async def close(self) -> None: ...


def open_cache_store(settings: Settings) -> CacheStore:
    """The store ``LLMTAP_CACHE_URL`` names (empty: SQLite in the data directory)."""
    url = settings.cache_url
    if url.startswith(("redis://", "rediss://", "unix://")):
        from llmtap.proxy.gateway.cache_redis import RedisCacheStore

        return RedisCacheStore(url, timeout_s=settings.cache_timeout_s)
    if url:
        from llmtap.errors import ConfigError

        # the scheme only: the rest of a URL may hold a password
        scheme = url.split("://", 1)[0][:20] if "://" in url else "no scheme"
        raise ConfigError(f"LLMTAP_CACHE_URL must be redis://... or empty, got {scheme!r}")
    from llmtap.proxy.gateway.cache_sqlite import SqliteCacheStore

    return SqliteCacheStore(
        settings.data_dir.absolute() / "cache.db", max_bytes=settings.cache_max_mb * 1024 * 1024
    )
