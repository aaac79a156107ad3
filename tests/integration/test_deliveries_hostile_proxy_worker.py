"""The delivery worker against a hostile egress proxy (docs/tls.md, "Webhook, alert and PostHog
deliveries"): every attempt ends within the delivery timeout as a named failure that the retry
and backoff take over, the sender threads are never pinned, and the proxy's credentials appear
nowhere a user or operator looks: the delivery history over the API, the dashboard, the logs.

Real sockets on 127.0.0.1 (a raw socket plays the proxy), the real API and records store
(``ApiBackend``), the real worker.
"""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from llmtap.delivery.worker import DeliveryWorker, WorkerConfig, default_kinds
from llmtap.settings import Settings
from llmtap.stores.records.outbox import Delivery
from support.api_backend import ApiBackend
from support.dashboard import signed_in
from support.hostile_peer import RawServer, drip
from support.probes import wait_for
from support.receiver import Receiver

USER, PASSWORD = "proxy-user", "pr0xy-s3cret"
TIMEOUT_S = 0.3


def answer(data: bytes) -> Callable[[socket.socket, RawServer], None]:
    def serve(conn: socket.socket, server: RawServer) -> None:
        conn.sendall(data)
        server.stopped.wait(0.2)  # then close, whatever the client does

    return serve


HOSTILE = {
    "slow-loris": (drip(b"HTTP/1.1 200 OK\r\nX-Pad: ", for_s=8.0), "no answer within 0.3s"),
    "407 with a page": (
        answer(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 11\r\n\r\n<h1>no</h1>"
        ),
        "answered 407 Proxy Authentication Required to CONNECT",
    ),
    "closes after 200": (
        answer(b"HTTP/1.1 200 Connection established\r\n\r\n"),
        "connection failed: ",  # RemoteDisconnected or a reset, as the close races the POST
    ),
    "huge status line": (
        answer(b"HTTP/1.1 200 " + b"x" * 20_000),
        "answered CONNECT with a head larger than the limit",
    ),
}


# the egress tests choose their proxy themselves, never the environment's
pytestmark = pytest.mark.usefixtures("no_proxy_environment")


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data", analytics=False) as opened:
        yield opened


def sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("llmtap-delivery")]


@pytest.mark.parametrize("behaviour", list(HOSTILE))
def test_a_hostile_proxy_is_a_bounded_named_failure_retried_without_leaking_credentials(
    backend: ApiBackend, behaviour: str, caplog: pytest.LogCaptureFixture
) -> None:
    serve, named = HOSTILE[behaviour]
    caplog.set_level(logging.DEBUG)
    org, key = backend.new_org_key("acme")
    before = set(threading.enumerate())
    with RawServer(serve) as proxy, Receiver() as receiver:
        settings = Settings(
            data_dir=backend.settings.data_dir,
            outbox_retry_base_s=0.05,
            outbox_retry_max_s=0.1,
            outbox_poll_s=0.05,
            outbox_timeout_s=TIMEOUT_S,
            outbox_threads=2,
            outbox_allow_private_targets=True,
            upstream_proxy_url=f"http://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}",
        )
        hook, _ = backend.records.integrations.create_webhook(
            org, receiver.url + "/hook", 100.0, {}
        )
        now = int(time.time() * 1000)
        backend.records.outbox.enqueue([], [Delivery(hook, org, "r-1", b"{}", "r-1")], now)
        worker = DeliveryWorker(
            backend.records.outbox, WorkerConfig.from_settings(settings), default_kinds(settings)
        )
        worker.start()
        try:
            # several attempts well inside the time one dripping answer lasts (8 s)
            wait_for(
                lambda: backend.records.outbox.history(org, hook, 10)[0].attempts >= 3,
                timeout_s=4,
                what="three bounded attempts",
            )
            assert len(sender_threads()) <= settings.outbox_threads
        finally:
            worker.stop()
        assert receiver.received == []
        (attempt,) = backend.records.outbox.history(org, hook, 10)
        assert attempt.last_error is not None and named in attempt.last_error
        assert proxy.got and proxy.got[0].startswith(b"CONNECT 127.0.0.1:")

        encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        auth = {"Authorization": f"Bearer {key}"}
        shown = [
            httpx.get(f"{backend.url}/v1/webhooks/{hook}", headers=auth, timeout=10),
            httpx.get(f"{backend.url}/v1/webhooks/{hook}/deliveries", headers=auth, timeout=10),
            httpx.get(f"{backend.url}/v1/webhooks", headers=auth, timeout=10),
        ]
        with signed_in(backend.url, key) as client:
            shown += [client.get("/webhooks"), client.get(f"/webhooks/{hook}")]
        assert all(page.status_code == 200 for page in shown)
        assert named in shown[1].text
        for text in [page.text for page in shown] + [caplog.text]:
            assert PASSWORD not in text and USER not in text and encoded not in text

    # no sender or deadline thread is left behind
    wait_for(
        lambda: (
            not [t for t in sender_threads() if t not in before]
            and not [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
        ),
        timeout_s=5,
        what="the worker's threads ended",
    )
