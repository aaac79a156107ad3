"""The API served by uvicorn: in a thread of the backend process (embedded: it shares the
consumer's chDB), or on its own (``llmtap api``, distributed).

``ApiService`` opens what the API reads (records for keys and search, bodies) and closes it on
``stop``; the analytics store is passed in, because in the backend the consumer owns it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import uvicorn

from llmtap.alerts.rules import AlertLimits
from llmtap.api.app import create_app
from llmtap.api.auth import KeyResolver
from llmtap.api.context import ApiContext, ScoreLimits
from llmtap.api.filters import FilterLimits
from llmtap.api.head_timeout import head_timeout_protocol
from llmtap.api.ingest_http import Ingestion
from llmtap.api.metrics_query import MetricsSource
from llmtap.api.query_gate import QueryGate
from llmtap.api.search import RequestSearch
from llmtap.keys.directory import KeyDirectory
from llmtap.settings import Settings
from llmtap.stores.factory import open_records_and_bodies

log = logging.getLogger(__name__)
START_TIMEOUT_S = 30.0


class ApiService:
    def __init__(self, settings: Settings, *, metrics: MetricsSource | None) -> None:
        self._settings = settings
        with ExitStack() as opened:  # closes what was opened if anything after it fails
            records, bodies = open_records_and_bodies(settings, opened)
            limits = FilterLimits(
                max_values=settings.api_filter_max_values,
                max_leaves=settings.api_filter_max_leaves,
                max_depth=settings.api_filter_max_depth,
            )
            search = RequestSearch(
                records.reader,
                bodies,
                scan_max_bytes=settings.api_text_scan_max_bytes,
                scores=records.scores,
            )
            keys = KeyResolver(
                KeyDirectory(records.org_for_key_hash, ttl_s=settings.key_cache_ttl_s)
            )
            ingestion = Ingestion.open(settings, keys)
            opened.callback(ingestion.close)
            self._resources = opened.pop_all()
        self.context = ApiContext(
            search=search,
            keys=keys,
            metrics=metrics,
            ingestion=ingestion,
            records=records,
            limits=limits,
            score_limits=ScoreLimits(
                max_per_call=settings.scores_max_per_call,
                max_pending=settings.scores_max_pending,
            ),
            outbox_allow_private=settings.outbox_allow_private_targets,
            webhooks_max_per_org=settings.webhooks_max_per_org,
            alert_limits=AlertLimits(
                min_window_s=settings.alerts_min_window_s,
                max_window_s=settings.alerts_max_window_s,
                max_per_org=settings.alerts_max_per_org,
                filter_limits=limits,
            ),
            gate=QueryGate(
                settings.api_query_concurrency,
                settings.api_query_wait_s,
                max_waiting=settings.api_query_max_waiting,
            ),
        )
        self.app = create_app(self.context, settings)
        config = uvicorn.Config(
            self.app,
            host=settings.api_host,
            port=settings.api_port,
            http=head_timeout_protocol(settings.api_header_read_timeout_s),
            limit_concurrency=settings.api_max_concurrency,
            lifespan="off",
            access_log=False,
            log_config=None,
            # HTTPS when both are set (settings.py checks they go together)
            ssl_certfile=settings.api_tls_cert_file or None,
            ssl_keyfile=settings.api_tls_key_file or None,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        scheme = "https" if self._settings.api_tls_cert_file else "http"
        return f"{scheme}://{self._settings.api_host}:{self._settings.api_port}"

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def run(self) -> None:
        """Serve in this thread until ``stop`` (or SIGTERM/SIGINT in the main thread)."""
        log.info(
            "api listening on %s (dashboard at %s/, docs at %s/v1/docs)",
            self.url,
            self.url,
            self.url,
        )
        self._server.run()

    def start(self, on_exit: Callable[[], None] | None = None) -> None:
        """Serve in a thread; ``on_exit`` is called when it stops for any reason (a port in use
        ends it at once)."""

        def target() -> None:
            try:
                self.run()
            except SystemExit:
                log.error("api could not start on %s", self.url)
            finally:
                if on_exit is not None:
                    on_exit()

        self._thread = threading.Thread(target=target, name="llmtap-api", daemon=True)
        self._thread.start()

    def wait_started(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        """True once the socket is listening; False if the server ended or took too long."""
        deadline = time.monotonic() + timeout_s
        pause = threading.Event()
        while not self.started:
            alive = self._thread is not None and self._thread.is_alive()
            if not alive or time.monotonic() > deadline:
                return False
            pause.wait(0.02)
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._resources.close()


def run_api(settings: Settings) -> int:
    """``llmtap api``: the API alone, until SIGTERM/SIGINT. Metrics use the analytics store at
    ``analytics_url`` (or the records store, ``records://``) if it can be opened here (a chDB
    directory held by a running backend cannot: then metrics answer 503 and the rest works).
    A chDB of its own beside a shared records store is refused: it would answer 0 for calls the
    consumers stored (``refuse_split_analytics``)."""
    from llmtap.errors import ConfigError, LlmtapError
    from llmtap.stores.factory import open_analytics_reader, refuse_split_analytics

    try:
        refuse_split_analytics(settings, "api")
    except ConfigError as exc:
        log.error("api cannot start: %s", exc)
        return 2
    with ExitStack() as stack:
        metrics: MetricsSource | None = None
        try:
            analytics = open_analytics_reader(settings)
            stack.callback(analytics.close)
            metrics = analytics
        except LlmtapError as exc:
            log.warning("metrics disabled (503): %s", exc)
        try:
            service = ApiService(settings, metrics=metrics)
        except LlmtapError as exc:
            log.error("api cannot start: %s", exc)
            return 2
        stack.callback(service.close)
        service.run()
    return 0
