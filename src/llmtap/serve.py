"""``llmtap serve``: the whole gateway on one machine, supervised.

Process layout (embedded topology, docs/architecture.md):

* N proxy processes (``proxy_processes``) sharing the port with ``SO_REUSEPORT``;
* one backend process: the consumer (and the API, which shares its stores);
* with ``--demo`` (``settings.demo``), also the mock upstream every provider base URL and route
  points at for the run, and the demo's traffic process sending synthetic calls through the proxy
  (``llmtap.demo``);
* this supervisor, which prepares the stores, starts the children, restarts one that dies, and on
  SIGTERM/SIGINT stops the demo traffic first, then the proxies (they finish in-flight calls and
  ship every record into the durable queue), then the backend (it finishes its batch and
  commits), then the mock upstream the proxies' last calls may still be talking to, and exits 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import FrameType

from llmtap.logs import configure_logging
from llmtap.private_files import private_root
from llmtap.settings import Settings

log = logging.getLogger("llmtap.serve")
RESTART_BACKOFF_MAX_S = 30.0
STOP_TIMEOUT_S = 60.0


def _proxy_main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    from llmtap.consumer.call_price import pricer_factory
    from llmtap.proxy.server import run_proxy

    run_proxy(settings, pricer_factory(settings.price_overrides))


def _backend_main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    from llmtap.backend import run_backend

    sys.exit(run_backend(settings))


def _mock_upstream_main(port: int, settings: Settings) -> None:
    configure_logging(settings.log_level)
    # Ctrl-C reaches every process of the terminal's group; the mock must outlive the proxies'
    # last calls, so only the supervisor's SIGTERM, sent last, stops it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    from llmtap.testing.mock_upstream import run_mock_upstream

    run_mock_upstream(DEMO_HOST, port)


def _demo_traffic_main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    from llmtap.demo.traffic import run_traffic

    sys.exit(run_traffic(settings))


DEMO_HOST = "127.0.0.1"


@contextmanager
def hold_free_port(host: str = DEMO_HOST) -> Iterator[int]:
    """A free port, kept bound (not listening) until the end of the block.

    Nothing else can take the port meanwhile, so the mock upstream child (which binds it with
    ``SO_REUSEPORT``, as this socket does) finds it free after a restart too; connections only
    ever reach a listening socket, never this one.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        yield port


def demo_settings(settings: Settings, mock_url: str) -> Settings:
    """The run's settings with every provider base URL and route pointed at the mock upstream,
    so demo traffic (and anything else sent through this proxy) never reaches a real provider."""
    from llmtap.demo.calls import ROUTED_PROVIDERS

    routes = dict.fromkeys(ROUTED_PROVIDERS, mock_url)
    update = {"openai_base_url": mock_url, "anthropic_base_url": mock_url, "routes": routes}
    return settings.model_copy(update=update)


@dataclass
class Child:
    name: str
    target: Callable[[Settings], None]
    process: multiprocessing.process.BaseProcess | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = field(default=0.0)


def prepare(settings: Settings) -> None:
    """Create the data directory, run store migrations, and on first start make a key."""
    from llmtap.stores.factory import open_records_store

    private_root(settings.data_dir.absolute())
    store = open_records_store(settings.records_url)
    try:
        org_id = store.default_org_id()
        if not store.list_keys(org_id):
            _, key = store.create_key(org_id, "default")
            print(
                "\nA default organization and its API key were created. The key is shown once:"
                f"\n\n    {key}\n\nUse it as `Helicone-Auth: Bearer <key>` and to query the API.\n",
                flush=True,
            )
    finally:
        store.close()


def banner(settings: Settings) -> str:
    proxy_scheme = "https" if settings.proxy_tls_cert_file else "http"
    api_scheme = "https" if settings.api_tls_cert_file else "http"
    proxy = f"{proxy_scheme}://{settings.proxy_host}:{settings.proxy_port}"
    api = f"{api_scheme}://{settings.api_host}:{settings.api_port}"
    text = (
        f"llmtap is running (data in {settings.data_dir.absolute()})\n"
        f"  proxy:     {proxy}  ({settings.proxy_processes} process(es))\n"
        f"  OpenAI SDK:    OpenAI(base_url='{proxy}/v1')\n"
        f"  Anthropic SDK: Anthropic(base_url='{proxy}')\n"
        f"  logged calls:  llmtap requests\n"
        f"  dashboard:     {api}/  (sign in with an llmtap key)\n"
        f"  query API:     {api}/v1/requests  (docs: {api}/v1/docs; key: Authorization: Bearer)\n"
    )
    if settings.demo:
        routes = ", ".join(settings.routes)
        text += (
            f"  DEMO MODE: ~{settings.demo_calls_per_s:g} synthetic calls/s go through the proxy "
            f"to the mock upstream at {settings.openai_base_url}\n"
            f"    OpenAI, Anthropic and the routes {routes} all point at the mock for this run:\n"
            "    no provider key is needed, and no call reaches a real provider.\n"
            f"    The demo calls are stored in {settings.data_dir.absolute()} like any other;\n"
            "    give the demo a directory of its own (--data-dir demo-data) to keep them apart.\n"
        )
    return text


def serve(settings: Settings) -> int:
    configure_logging(settings.log_level)
    prepare(settings)
    with ExitStack() as held:
        upstreams: list[Child] = []
        drivers: list[Child] = []
        if settings.demo:
            port = held.enter_context(hold_free_port())
            settings = demo_settings(settings, f"http://{DEMO_HOST}:{port}")
            upstreams.append(Child("mock-upstream", partial(_mock_upstream_main, port)))
            drivers.append(Child("demo-traffic", _demo_traffic_main))
        return _supervise(settings, upstreams, drivers)


def _supervise(settings: Settings, upstreams: list[Child], drivers: list[Child]) -> int:
    ctx = multiprocessing.get_context("spawn")
    backend = Child("backend", _backend_main)
    proxies = [Child(f"proxy-{i}", _proxy_main) for i in range(settings.proxy_processes)]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def start(child: Child) -> None:
        child.process = ctx.Process(target=child.target, args=(settings,), name=child.name)
        child.process.start()
        child.started = time.monotonic()

    # the order they serve each other in: upstream, backend, proxies, then traffic into them
    children = [*upstreams, backend, *proxies, *drivers]
    for child in children:
        start(child)
    print(banner(settings), flush=True)
    while not stop.wait(0.5):
        for child in children:
            _restart_if_dead(child, start)

    log.info("stopping: proxies first (they ship every answered call), then the backend")
    ok = _stop_all(drivers)
    ok &= _stop_all(proxies)
    ok &= _stop_all([backend])
    ok &= _stop_all(upstreams)
    log.info("llmtap stopped")
    return 0 if ok else 1


def _restart_if_dead(child: Child, start: Callable[[Child], None]) -> None:
    process = child.process
    if process is None or process.is_alive():
        return
    now = time.monotonic()
    if child.next_start == 0.0:
        # Back off when it keeps dying soon after start; reset after a long healthy run.
        if now - child.started > RESTART_BACKOFF_MAX_S:
            child.restarts = 0
        delay = min(RESTART_BACKOFF_MAX_S, 0.5 * 2**child.restarts)
        log.error(
            "%s exited with code %s; restarting in %.1fs", child.name, process.exitcode, delay
        )
        child.next_start = now + delay
        return
    if now >= child.next_start:
        child.restarts += 1
        child.next_start = 0.0
        start(child)


def _stop_all(children: list[Child]) -> bool:
    """SIGTERM each, wait for all; True when every one exited cleanly."""
    live = [c.process for c in children if c.process is not None and c.process.is_alive()]
    for process in live:
        process.terminate()
    ok = True
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in live:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.error("%s did not stop in %ss; killing it", process.name, STOP_TIMEOUT_S)
            process.kill()
            process.join()
            ok = False
        elif process.exitcode != 0:
            log.error("%s exited with code %s", process.name, process.exitcode)
            ok = False
    return ok
