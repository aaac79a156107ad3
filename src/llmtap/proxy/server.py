"""Starting and stopping one proxy process.

``ProxyServer`` owns everything the process needs, created here at start and passed down: the
router, the upstream pool, the key directory (read-only on the records database: no migrations),
the shipper (queue producer, body store, spool) and the metrics. SIGTERM stops accepting, lets in-flight calls finish (bounded), then closes the shipper,
which ships and flushes everything the clients were answered for. Several processes can listen
on one port (``SO_REUSEPORT``), the kernel spreading connections between them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import threading

import uvloop

from llmtap.errors import ConfigError, LlmtapError, QueueError, StoreError
from llmtap.keys.directory import KeyDirectory
from llmtap.outbound.egress import Egress
from llmtap.outbound.trust import outbound_context
from llmtap.proxy.app import ProxyApp, Sweeper
from llmtap.proxy.auth_gate import AuthGate
from llmtap.proxy.client import ClientConnection
from llmtap.proxy.gateway.build import build_gateway
from llmtap.proxy.gateway.cache_step import CacheStep
from llmtap.proxy.gateway.cache_store import open_cache_store
from llmtap.proxy.gateway.pipeline import Gateway
from llmtap.proxy.gateway.ratelimit_cost import PricerFactory
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.routing import Router
from llmtap.proxy.shipper import Lazy, Shipper
from llmtap.proxy.tls import listener_context
from llmtap.proxy.upstream_pool import UpstreamPool
from llmtap.queue.factory import open_producer
from llmtap.queue.spool import Spool
from llmtap.settings import Settings
from llmtap.stores.factory import open_body_store
from llmtap.stores.records.key_table import KeyTable

log = logging.getLogger("llmtap.proxy")
DRAIN_TIMEOUT_S = 30.0
# The loop thread shares the GIL with the shipper thread; at Python's default 5 ms switch
# interval a call arriving while the shipper runs could wait 5 ms for the GIL.
GIL_SWITCH_INTERVAL_S = 0.0005
# Python's cyclic garbage collector, left at its defaults, cost a proxy process 5-9 µs per call
# and paused it ~60 ms at each full collection (which scans every object, the ~100,000 of the
# imported modules included): docs/decisions/2026-12-02-proxy-logging-cost.md. What is there once
# the proxy has started is frozen (never scanned again), and the youngest generation is collected
# after 5,000 new objects instead of 700: a call allocates a few dozen, most freed by reference
# counting alone, so most collections found nothing to free.
GC_YOUNG_THRESHOLD = 5000


def open_key_directory(settings: Settings) -> KeyDirectory | None:
    """Key -> organization from the records database, without opening the records store: the
    proxy runs the key lookup and nothing else there (no migrations, no writes)."""
    try:
        table = KeyTable(settings.records_url)
    except (LlmtapError, OSError) as exc:
        log.warning("records store unusable; organizations left to the consumer: %s", exc)
        return None
    return KeyDirectory(
        table.grant_for_key_hash,
        ttl_s=settings.key_cache_ttl_s,
        inline=table.local,
        on_close=table.close,
    )


def build_auth_gate(
    settings: Settings, keys: KeyDirectory | None, metrics: ProxyMetrics
) -> AuthGate | None:
    """The key check; none without a key directory to ask (fail open). With ``auth_gate`` off
    it refuses nothing and only finds the keys' rate limits."""
    if keys is None:
        return None
    return AuthGate(keys, metrics, refuse_unknown=settings.auth_gate)


def build_shipper(
    settings: Settings, metrics: ProxyMetrics, keys: KeyDirectory | None = None
) -> Shipper:
    if keys is None:
        keys = open_key_directory(settings)
    return Shipper(
        producer=Lazy(
            lambda: open_producer(settings, group_commit_ms=settings.queue_group_commit_ms),
            QueueError,
            "queue",
        ),
        bodies=Lazy(lambda: open_body_store(settings.bodies_url), StoreError, "body store"),
        spool=Spool.claim(settings.spool_dir, settings.spool_max_bytes),
        keys=keys,
        metrics=metrics,
        topic=settings.topic,
        max_decoded_bytes=settings.max_capture_bytes,
        max_backlog=settings.shipper_max_backlog,
        give_way_backlog=settings.shipper_give_way_backlog,
        idle_sync_s=settings.queue_group_commit_ms / 1000,
    )


class ProxyServer:
    def __init__(
        self,
        settings: Settings,
        shipper: Shipper | None = None,
        pricer: PricerFactory | None = None,
    ) -> None:
        """``pricer`` prices calls for ``u=cents`` rate limits (the consumer's pricing, handed
        in by the command that starts the proxy: the proxy does not import the consumer)."""
        self.settings = settings
        self._pricer = pricer
        self._gateway: Gateway | None = None
        self.metrics = ProxyMetrics()
        self._shipper = shipper
        self._server: asyncio.Server | None = None
        self._app: ProxyApp | None = None
        self._pool: UpstreamPool | None = None
        self._sweeper: Sweeper | None = None
        self._keys: KeyDirectory | None = None
        self.port = settings.proxy_port

    @property
    def app(self) -> ProxyApp | None:
        return self._app

    @property
    def pool(self) -> UpstreamPool | None:
        return self._pool

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # configuration errors (a CA file, a proxy URL, a certificate) before anything is opened
        ssl_context = outbound_context(self.settings)
        egress = Egress.from_settings(self.settings)
        cache_store = open_cache_store(self.settings)
        listener_tls = listener_context(
            self.settings.proxy_tls_cert_file,
            self.settings.proxy_tls_key_file,
            "LLMTAP_PROXY_TLS_CERT_FILE",
        )
        self._keys = open_key_directory(self.settings)
        if self._shipper is None:
            self._shipper = build_shipper(self.settings, self.metrics, self._keys)
        auth_gate = build_auth_gate(self.settings, self._keys, self.metrics)
        self._shipper.start()
        self._pool = pool = UpstreamPool(
            loop,
            ssl_context,
            connect_timeout_s=self.settings.connect_timeout_s,
            allow_private=self.settings.allow_private_targets,
            max_head_bytes=self.settings.max_upstream_head_bytes,
            egress=egress,
            drain_timeout_s=self.settings.upstream_drain_timeout_s,
            drain_max_bytes=self.settings.upstream_drain_max_bytes,
        )
        router = Router(self.settings)
        self._gateway = build_gateway(
            self.settings,
            pool,
            router,
            self.metrics,
            self._keys,
            self._pricer,
            CacheStep(cache_store, pool, self.metrics, self.settings),
        )
        app = ProxyApp(
            self.settings,
            router,
            pool,
            self._shipper,
            self.metrics,
            auth_gate,
            self._gateway,
        )
        self._app = app
        self._server = await loop.create_server(
            lambda: ClientConnection(app),
            self.settings.proxy_host,
            self.settings.proxy_port,
            reuse_port=True,
            backlog=4096,
            ssl=listener_tls,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = Sweeper(loop, app)
        log.info("proxy listening on %s", self.url)
        if egress is not None:
            log.info("provider connections go through an egress proxy (%s)", egress.describe())

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.proxy_tls_cert_file else "http"
        return f"{scheme}://{self.settings.proxy_host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, finish in-flight calls (bounded), ship and flush every record."""
        if self._server is not None:
            self._server.close()
        app = self._app
        if app is not None:
            app.drain()
            try:
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await app.wait_idle()
            except TimeoutError:
                log.warning("%d call(s) still in flight at shutdown", len(app.active))
        if self._pool is not None:
            self._pool.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._gateway is not None:
            await self._gateway.aclose()
        if self._shipper is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._shipper.close)
        if self._keys is not None:
            self._keys.close()


def run_proxy(settings: Settings, pricer: PricerFactory | None = None) -> None:
    """Run one proxy process until SIGTERM/SIGINT (used by ``llmtap proxy`` and ``serve``)."""

    async def main() -> None:
        server = ProxyServer(settings, pricer=pricer)
        await server.start()
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("proxy stopping: draining in-flight calls and shipping their records")
        await server.stop()

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    try:
        uvloop.run(main())
    except ConfigError as exc:
        log.error("proxy cannot start: %s", exc)
        raise SystemExit(2) from None


class ThreadedProxy:
    """A proxy on its own loop in a background thread: for tests and embedding."""

    def __init__(
        self,
        settings: Settings,
        shipper: Shipper | None = None,
        pricer: PricerFactory | None = None,
    ) -> None:
        self._server = ProxyServer(settings, shipper, pricer)
        self._loop = uvloop.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmtap-proxy", daemon=True)
        self._error: BaseException | None = None

    @property
    def metrics(self) -> ProxyMetrics:
        return self._server.metrics

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def upstream_pool(self) -> UpstreamPool:
        """The pool of provider connections (tests look at what it holds)."""
        assert self._server.pool is not None
        return self._server.pool

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._server.start())
        except Exception as exc:  # noqa: BLE001 -- re-raised in the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self, timeout_s: float = 10.0) -> ThreadedProxy:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("proxy did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop)
        future.result(DRAIN_TIMEOUT_S + 35.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        self._loop.close()

    def __enter__(self) -> ThreadedProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
