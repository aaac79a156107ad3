"""The per-call gateway: the steps a call that asked for a feature goes through before (and
instead of) the plain ``pool.send``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmtap.proxy.gateway.cache_request import CacheHeaderError, cache_request
from llmtap.proxy.gateway.cache_step import CacheStep
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.types import Pool

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange


class Gateway:
    """Runs the gateway features for the calls that ask for them.

    ``wants`` is the only thing a plain call pays for (one attribute test); ``run`` takes over
    sending the call. The steps (rate limit, cache, retries, fallbacks) are added here in the
    order a call meets them.
    """

    def __init__(
        self, pool: Pool, metrics: ProxyMetrics | None = None, cache: CacheStep | None = None
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.cache = cache

    def wants(self, exchange: Exchange) -> bool:
        tap = exchange.tap
        return tap is not None and tap.features is not None

    def run(self, exchange: Exchange) -> None:
        tap = exchange.tap
        assert tap is not None and tap.features is not None
        if self.cache is not None:
            try:
                asked = cache_request(tap.features, exchange.request_headers)
            except CacheHeaderError as exc:
                if self.metrics is not None:
                    self.metrics.refused += 1
                exchange.respond_error(400, "invalid_cache_header", str(exc))
                return
            if asked is not None:
                self.cache.start(exchange, asked)
                return
        self.pool.send(exchange)

    def finished(self, exchange: Exchange) -> None:
        """A call the gateway took is over (the client has its answer): after-the-call work."""
        if self.cache is not None:
            self.cache.finished(exchange)

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()
