"""The backend process of ``llmtap serve``: the consumer (a thread) and the API (uvicorn, a
thread), sharing the stores.

chDB allows one process per data path, so everything that opens the embedded analytics store
lives here: the sinks are opened once, the consumer writes through them and the API's metrics
read the same analytics store. On SIGTERM the API stops first (no new reads), then the consumer
finishes and commits its batch, then the stores close.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import ExitStack
from types import FrameType

from llmtap.settings import Settings

log = logging.getLogger(__name__)


def run_backend(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; exit 0 when drained, 1 if a part failed, 2 if it could not
    start."""
    wake = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "%s received: stopping the api, draining the consumer", signal.Signals(signum).name
        )
        wake.set()

    # Handlers first: a SIGTERM while the stores open (imports and chDB take a moment) must end
    # in an orderly stop, not in the default handler's kill.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(settings, wake)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(settings: Settings, wake: threading.Event) -> int:
    from llmtap.api.metrics_query import MetricsSource
    from llmtap.api.server import ApiService
    from llmtap.consumer.heap import settle_heap
    from llmtap.consumer.priority import lower_thread_priority
    from llmtap.consumer.service import ConsumerService
    from llmtap.errors import LlmtapError
    from llmtap.stores.factory import analytics_from_records, open_analytics_reader, open_sinks

    with ExitStack() as stack:
        try:
            sinks = open_sinks(settings)
            for sink in sinks:
                stack.callback(sink.close)
            metrics: MetricsSource | None = next(
                (s for s in sinks if isinstance(s, MetricsSource)), None
            )
            if analytics_from_records(settings):
                reader = open_analytics_reader(settings)
                stack.callback(reader.close)
                metrics = reader
            consumer = ConsumerService(settings, sinks=sinks)
            stack.callback(consumer.close)
            api = ApiService(settings, metrics=metrics)
            stack.callback(api.close)
        except LlmtapError as exc:
            log.error("backend cannot start: %s", exc)
            return 2
        settle_heap(settings.consumer_gc_threshold)
        consumer.start(on_exit=wake.set)
        lower_thread_priority(consumer.thread_id, settings.serve_consumer_nice)
        # An API that cannot serve (port taken) is logged, not fatal: the consumer keeps moving
        # calls into the stores, which matters more than reading them right now.
        api.start()
        if not api.wait_started() and not wake.is_set():
            log.error("api is not serving on %s; the consumer keeps running", api.url)
        wake.wait()
        api.stop()
        drained = consumer.stop()
        return 0 if drained and consumer.failure is None else 1
