"""``llmtap serve``: the whole gateway on one machine, supervised.

Process layout (embedded topology, docs/architecture.md):

* N proxy processes (``proxy_processes``) sharing the port with ``SO_REUSEPORT``;
* one backend process: the consumer (and the API, which shares its stores);
* this supervisor, which prepares the stores, starts the children, restarts one that dies, and on
  SIGTERM/SIGINT stops the proxies first (they finish in-flight calls and ship every record into
  the durable queue), then the backend (it finishes its batch and commits), and exits 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from llmtap.logs import configure_logging
from llmtap.private_files import private_root
from llmtap.settings import Settings

log = logging.getLogger("llmtap.serve")
RESTART_BACKOFF_MAX_S = 30.0
STOP_TIMEOUT_S = 60.0


def _proxy_main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    from llmtap.proxy.server import run_proxy

    run_proxy(settings)


def _backend_main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    from llmtap.backend import run_backend

    sys.exit(run_backend(settings))


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
    proxy = f"http://{settings.proxy_host}:{settings.proxy_port}"
    api = f"http://{settings.api_host}:{settings.api_port}"
    return (
        f"llmtap is running (data in {settings.data_dir.absolute()})\n"
        f"  proxy:     {proxy}  ({settings.proxy_processes} process(es))\n"
        f"  OpenAI SDK:    OpenAI(base_url='{proxy}/v1')\n"
        f"  Anthropic SDK: Anthropic(base_url='{proxy}')\n"
        f"  logged calls:  llmtap requests\n"
        f"  dashboard:     {api}/  (sign in with an llmtap key)\n"
        f"  query API:     {api}/v1/requests  (docs: {api}/v1/docs; key: Authorization: Bearer)\n"
    )


def serve(settings: Settings) -> int:
    configure_logging(settings.log_level)
    prepare(settings)
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

    start(backend)
    for proxy in proxies:
        start(proxy)
    print(banner(settings), flush=True)
    while not stop.wait(0.5):
        for child in (backend, *proxies):
            _restart_if_dead(child, start)

    log.info("stopping: proxies first (they ship every answered call), then the backend")
    ok = _stop_all(proxies) & _stop_all([backend])
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
