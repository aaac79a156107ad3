"""Charging a ``u=cents`` budget what a call really cost, once the client has its answer.

The cost is the consumer's: the same parsers and price list (genai-prices, ``price_overrides``)
that will price the call's row. The proxy cannot import the consumer (docs/architecture.md), so
the pricing comes in as a ``PricerFactory`` from the command that starts the proxy, and is built
the first time a cents policy needs it (a proxy that never sees one never loads the price list).
Pricing runs on one thread of its own, never on the event loop; the charge itself goes back to
the loop (the Redis client lives there).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from llmtap.proxy.capture import build_record
from llmtap.proxy.gateway.ratelimit import Applied
from llmtap.proxy.gateway.ratelimit_store import LimiterStore, LimiterUnavailable
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.record import LogRecord

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange

log = logging.getLogger("llmtap.proxy.ratelimit")

CallPricer = Callable[[LogRecord, bytes | None, bytes | None], int | None]
"""(record, request body, response body) -> the call's cost in nano-dollars (None: unpriced)."""
PricerFactory = Callable[[], CallPricer]

_NANO_USD_PER_UNIT = 10
"""A cents budget counts millionths of a cent: 10 nano-dollars each."""


class CostCharger:
    def __init__(
        self,
        store: LimiterStore,
        factory: PricerFactory | None,
        metrics: ProxyMetrics,
        max_decoded_bytes: int,
    ) -> None:
        self._store = store
        self._factory = factory
        self._pricer: CallPricer | None = None
        self._metrics = metrics
        self._max_decoded = max_decoded_bytes
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="llmtap-ratelimit-cost")
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned = False

    def after(self, exchange: Exchange, applied: Sequence[Applied]) -> None:
        """On the loop, once the client has its answer: price the call off the loop, then
        charge each cents budget. A cache hit cost nothing, so it charges nothing."""
        if exchange.cache == "hit":
            return
        if self._factory is None:
            if not self._warned:
                self._warned = True
                log.warning("u=cents rate limits cannot be charged: this proxy has no pricer")
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._thread, self._price, exchange)
        task = loop.create_task(self._charge(future, applied))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _price(self, exchange: Exchange) -> int | None:
        if self._pricer is None:
            assert self._factory is not None
            self._pricer = self._factory()
        captured = build_record(exchange, None, max_decoded_bytes=self._max_decoded)
        return self._pricer(captured.record, captured.request_body, captured.response_body)

    async def _charge(self, priced: asyncio.Future[int | None], applied: Sequence[Applied]) -> None:
        try:
            nano_usd = await priced
        except Exception:  # fail-open edge: an unpriceable call is not charged
            self._metrics.internal_errors += 1
            log.exception("pricing a call for its rate limit failed (not charged)")
            return
        if not nano_usd or nano_usd <= 0:
            return
        units = -(-nano_usd // _NANO_USD_PER_UNIT)
        for a in applied:
            try:
                await self._store.charge(a.check.key, units, a.check.window_ms)
            except LimiterUnavailable as exc:
                self._metrics.ratelimit_failopen += 1
                log.warning("a call's cost was not charged to its rate limit: %s", exc)

    async def aclose(self) -> None:
        """Let the charges already priced or pricing land (bounded), then stop the thread."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown)
