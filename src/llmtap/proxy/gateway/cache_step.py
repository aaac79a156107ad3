"""The cache step of the gateway: look a call up, replay a hit, or send it and save the answer.

A full bucket this process remembers (``MemoryCache``, for ``cache_memory_ttl_s``) is answered
at once; otherwise one asyncio task per call does the lookup (the store answers off the loop:
SQLite on its own thread, Redis over asyncio). A hit is replayed by ``cache_replay``: the bytes and
the capture of a relayed answer, so it is captured and logged like any answer (a whole body in one
write from the head the memory prepared when it learnt the answer).
A miss is handed to the call's ``Sender`` with a ``MissRelay`` as the answer's way back: the
gateway sends it once, or through its retries and fallbacks when the call asked for them (the
relay then sees only the answer that reaches the client, never a held-back attempt). Once the
client has the whole answer (``finished``, called from ``ProxyApp.finish``) a successful one is
saved, else the claimed slot is released — whatever ended the call: an error, the last retry's
error status, the client leaving, a timeout.

Fail-open: when the store fails (``CacheStoreError``) or this step has a bug, the call goes to the
provider uncached and the failure is counted (``llmtap_proxy_cache_errors_total``); after a
store failure the cache is skipped for ``SKIP_AFTER_ERROR_S`` so a dead Redis costs one timeout,
not one per call (``cache_bypassed``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmtap.capture.tap import HOP_BY_HOP, HeaderList
from llmtap.proxy.gateway.cache_key import cache_key
from llmtap.proxy.gateway.cache_memory import REFRESH, MemoryCache
from llmtap.proxy.gateway.cache_relay import CACHE_HEADER_NAMES, MissRelay
from llmtap.proxy.gateway.cache_replay import Prepared, replay
from llmtap.proxy.gateway.cache_request import CacheRequest, max_age
from llmtap.proxy.gateway.cache_store import (
    Begin,
    CachedResponse,
    CacheFullError,
    CacheStore,
    CacheStoreError,
    decode_response,
    encode_response,
)
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.stream_end import relayed_final_event
from llmtap.proxy.types import Pool
from llmtap.settings import Settings

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange

log = logging.getLogger("llmtap.proxy.cache")

SKIP_AFTER_ERROR_S = 1.0
CLOSE_WAIT_S = 2.0
INLINE_KEY_BYTES = 64 * 1024
"""Bodies up to this are hashed on the loop (microseconds); larger ones on a thread."""
WARN_EVERY_S = 10.0
_FIRST_PAUSE_S = 0.002
_MAX_PAUSE_S = 0.05
# which fallback target answered is said of the call that went to it, never of a hit
_NOT_STORED = CACHE_HEADER_NAMES | {
    b"set-cookie",
    b"helicone-fallback-index",
    b"llmtap-fallback-index",
}

Sender = Callable[[MissRelay | None], None]
"""Sends a call the cache did not answer on to the provider: through the relay (a miss, whose
answer the cache keeps) or uncached (None: the store failed, or this step did)."""


class CacheStep:
    def __init__(
        self, store: CacheStore, pool: Pool, metrics: ProxyMetrics, settings: Settings
    ) -> None:
        self.store = store
        self.pool = pool
        self.metrics = metrics
        self.max_body = settings.cache_max_body_bytes
        self.fill_wait_s = settings.cache_fill_wait_s
        # a claim outlives the longest call: a process that dies mid-fill frees it then
        self.claim_ms = int((settings.total_timeout_s + 5.0) * 1000)
        # a refresh longer than one store call is given up (the next call asks the store)
        self.memory = MemoryCache(
            settings.cache_memory_bytes, settings.cache_memory_ttl_s, settings.cache_timeout_s
        )
        # an answer that lives less than the memory keeps it is served from the store only
        self.memory_ttl_ms = int(settings.cache_memory_ttl_s * 1000)
        self._fills: dict[Exchange, MissRelay] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._skip_until = 0.0
        self._next_warning = 0.0

    def start(self, exchange: Exchange, request: CacheRequest, send: Sender | None = None) -> None:
        """Take the call over (called on the loop by ``Gateway.run``); ``send`` is how it goes
        on to the provider when the cache does not answer it (default: one plain attempt)."""
        if send is None:
            send = self._plain_sender(exchange)
        if len(exchange.request_body) > INLINE_KEY_BYTES:
            # a large body is hashed (and, with ignore-keys, parsed) off the loop
            self._spawn(self._key_off_the_loop(exchange, request, send))
            return
        try:
            key = cache_key(exchange, request)
        except Exception:  # noqa: BLE001 -- fail-open edge: logged, counted, goes on uncached
            self._internal_error(exchange, send)
            return
        self._keyed(exchange, request, key, send)

    def _plain_sender(self, exchange: Exchange) -> Sender:
        pool = self.pool

        def send(relay: MissRelay | None) -> None:
            pool.send(exchange if relay is None else relay)

        return send

    async def _key_off_the_loop(
        self, exchange: Exchange, request: CacheRequest, send: Sender
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            key = await loop.run_in_executor(None, cache_key, exchange, request)
        except Exception:  # noqa: BLE001 -- fail-open edge: logged, counted, goes on uncached
            self._internal_error(exchange, send)
            return
        if not exchange.finished:
            self._keyed(exchange, request, key, send)

    def _keyed(self, exchange: Exchange, request: CacheRequest, key: str, send: Sender) -> None:
        refresh = False
        try:
            remembered = (
                self.memory.get(key, request.bucket_size, random.getrandbits(30))
                if request.read
                else None
            )
            if isinstance(remembered, Prepared):
                self._replay(exchange, remembered)
                return
            refresh = remembered is REFRESH
        except Exception:  # noqa: BLE001 -- fail-open edge: logged, counted, goes on uncached
            self._internal_error(exchange, send)
            return
        if time.monotonic() < self._skip_until:
            if refresh:
                self.memory.forget(key)
            self.metrics.cache_bypassed += 1
            send(None)
            return
        self._spawn(self._lookup(exchange, request, key, send, refresh))

    def _internal_error(self, exchange: Exchange, send: Sender) -> None:
        self.metrics.internal_errors += 1
        log.exception("llmtap internal error in the cache step (the call goes on uncached)")
        if exchange.finished:
            return
        if exchange.head_sent:
            exchange.fail(502, "llmtap_cache_error", "the cached answer could not be replayed")
        else:
            send(None)

    def _spawn(self, work: object) -> None:
        assert asyncio.iscoroutine(work)
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _lookup(
        self, exchange: Exchange, request: CacheRequest, key: str, send: Sender, refresh: bool
    ) -> None:
        """Ask the store; ``refresh``: this call is the one asking again for an expired bucket
        the memory keeps serving meanwhile (it is renewed by a hit, else forgotten)."""
        begin: Begin | None = None
        try:
            self.metrics.cache_lookups += 1
            begin = await self._begin(exchange, request, key)
            answer = None
            if begin.action == "hit":
                answer = Prepared(decode_response(begin.data), begin.idx)
                self._remember(key, answer, len(begin.data))
                refresh = False
            if exchange.finished:  # the client left, or the call timed out, while we looked
                if begin.action == "fill":
                    await self.store.release(key, begin.idx)
                return
            if answer is not None:
                self._replay(exchange, answer)
                return
        except CacheStoreError as exc:
            self._store_failed(exc)
            begin = None
        except Exception:  # noqa: BLE001 -- fail-open edge: logged, counted, goes on uncached
            if begin is not None and begin.action == "fill":
                self._spawn(self._release(key, begin.idx))
            self._internal_error(exchange, send)
            return
        finally:
            if refresh:  # no hit renewed the bucket: its remembered answers are stale
                self.memory.forget(key)
        if exchange.finished:
            return
        if begin is None:
            if exchange.head_sent:  # a replay that broke half-way: cut it, as a provider would
                exchange.fail(502, "llmtap_cache_error", "the cached answer could not be replayed")
            else:
                send(None)
            return
        self.metrics.cache_misses += 1
        exchange.cache = "miss"
        fill = begin.idx if begin.action == "fill" else None
        relay = MissRelay(exchange, key, fill, max_age(exchange.request_headers) * 1000)
        if fill is not None:
            # registered before sending: however the call ends, ``finished`` frees the slot
            self._fills[exchange] = relay
        send(relay)

    async def _begin(self, exchange: Exchange, request: CacheRequest, key: str) -> Begin:
        deadline = time.monotonic() + self.fill_wait_s
        pause = _FIRST_PAUSE_S
        while True:
            begin = await self.store.begin(
                key,
                request.bucket_size,
                request.read,
                request.save,
                self.claim_ms,
                random.getrandbits(30),
            )
            if begin.action != "wait":
                return begin
            left = deadline - time.monotonic()
            if left <= 0 or exchange.finished:
                # the fill never came: forget its event (a waiter still polling makes another)
                self._wake.pop(key, None)
                return Begin("miss")
            # a fill in this process wakes us at once; one in another process is polled for
            event = self._wake.setdefault(key, asyncio.Event())
            try:
                async with asyncio.timeout(min(left, pause)):
                    await event.wait()
            except TimeoutError:
                pass
            pause = min(pause * 2, _MAX_PAUSE_S)

    def _replay(self, exchange: Exchange, answer: Prepared) -> None:
        self.metrics.cache_hits += 1
        exchange.cache = "hit"
        exchange.request_bytes = b""  # nothing went to a provider: the record says 0 attempts
        replay(exchange, answer)

    def _remember(self, key: str, answer: Prepared, stored: int) -> None:
        if self.memory.enabled:
            self.memory.add(key, answer, self.memory.prepared_size(answer, stored))

    # -- after the client has its answer ------------------------------------------------------

    def finished(self, exchange: Exchange) -> None:
        """The call is over (``ProxyApp.finish``): save its answer, or free its slot."""
        relay = self._fills.pop(exchange, None)
        if relay is None or relay.idx is None:
            return
        answer = self._cacheable(exchange, relay)
        if answer is None or relay.ttl_ms <= 0:
            self._spawn(self._release(relay.key, relay.idx))
        else:
            self._spawn(self._put(relay.key, relay.idx, answer, relay.ttl_ms))

    def _cacheable(self, exchange: Exchange, relay: MissRelay) -> CachedResponse | None:
        if exchange.error is not None or not 200 <= exchange.status < 300:
            return None
        if exchange.tap is not None and exchange.tap.omit_response:
            return None  # Helicone-Omit-Response: the answer is written nowhere, the cache too
        if exchange.resp_truncated or exchange.resp_size > self.max_body:
            return None  # a body cut by the capture limit must never be served
        if not relay.completed and not relayed_final_event(exchange.resp_parts, whole=True):
            return None  # the client left before the end: the stream may be incomplete
        body = b"".join(exchange.resp_parts)
        if len(body) != exchange.resp_size:
            return None
        headers: HeaderList = [
            (n, v)
            for n, v in relay.headers
            if n.lower() not in HOP_BY_HOP and n.lower() not in _NOT_STORED
        ]
        return CachedResponse(exchange.status, relay.reason, headers, relay.upstream_chunked, body)

    async def _put(self, key: str, idx: int, answer: CachedResponse, ttl_ms: int) -> None:
        data = encode_response(answer)
        try:
            self.metrics.cache_evicted += await self.store.put(key, idx, data, ttl_ms)
            self.metrics.cache_saves += 1
            if ttl_ms >= self.memory_ttl_ms:
                self._remember(key, Prepared(answer, idx), len(data))
        except CacheFullError as exc:
            # the store works: its claim is gone with the failed write, nothing to skip
            self.metrics.cache_not_stored += 1
            self.metrics.cache_evicted += exc.evicted
        except CacheStoreError as exc:
            self._store_failed(exc)
        finally:
            self._wake_waiters(key)

    async def _release(self, key: str, idx: int) -> None:
        try:
            await self.store.release(key, idx)
        except CacheStoreError as exc:
            self._store_failed(exc)
        finally:
            self._wake_waiters(key)

    def _wake_waiters(self, key: str) -> None:
        event = self._wake.pop(key, None)
        if event is not None:
            event.set()

    def _store_failed(self, exc: CacheStoreError) -> None:
        self.metrics.cache_errors += 1
        self._skip_until = time.monotonic() + SKIP_AFTER_ERROR_S
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + WARN_EVERY_S
            log.warning("cache store failed; calls go through uncached for now: %s", exc)

    async def close(self) -> None:
        """At shutdown, after the last call: let pending saves land (bounded), then close."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_WAIT_S)
        for task in list(self._tasks):
            task.cancel()
        await self.store.close()
