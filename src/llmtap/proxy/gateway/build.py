"""Building the gateway at start: its steps and the store they keep state in, picked by URL.

``cache_url`` empty keeps rate-limit counters in ``<data_dir>/ratelimits.db`` (every proxy
process of the machine shares it); ``redis://…`` or ``rediss://…`` keeps them in Redis (every
proxy machine shares it). Nothing is opened here: each store connects on first use, so a proxy
whose calls never ask for a feature never touches one — except the embedded file, which is opened
at start on the store's own thread (see ``SqliteLimiterStore.start``).
"""

from __future__ import annotations

from llmtap.errors import ConfigError
from llmtap.keys.directory import KeyDirectory
from llmtap.proxy.gateway.cache_step import CacheStep
from llmtap.proxy.gateway.pipeline import Gateway
from llmtap.proxy.gateway.ratelimit import RateLimiter
from llmtap.proxy.gateway.ratelimit_cost import CostCharger, PricerFactory
from llmtap.proxy.gateway.ratelimit_redis import RedisLimiterStore
from llmtap.proxy.gateway.ratelimit_sqlite import SqliteLimiterStore
from llmtap.proxy.gateway.ratelimit_store import LimiterStore
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.routing import Router
from llmtap.proxy.types import Pool
from llmtap.settings import Settings


def open_limiter_store(settings: Settings) -> LimiterStore:
    url = settings.cache_url
    if not url:
        store = SqliteLimiterStore(
            settings.data_dir.absolute() / "ratelimits.db",
            busy_timeout_s=settings.ratelimit_store_timeout_s,
        )
        store.start()
        return store
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLimiterStore(url, timeout_s=settings.ratelimit_store_timeout_s)
    raise ConfigError("LLMTAP_CACHE_URL must be empty (embedded) or redis://host:port/db")


def build_gateway(
    settings: Settings,
    pool: Pool,
    router: Router,
    metrics: ProxyMetrics,
    keys: KeyDirectory | None,
    pricer: PricerFactory | None = None,
    cache: CacheStep | None = None,
) -> Gateway:
    store = open_limiter_store(settings)
    return Gateway(
        pool,
        router,
        settings,
        metrics,
        RateLimiter(store, metrics, keys),
        CostCharger(store, pricer, metrics, settings.max_capture_bytes),
        cache,
    )
