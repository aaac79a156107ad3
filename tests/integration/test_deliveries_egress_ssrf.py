"""Webhook URLs aimed inside the network while deliveries go through an egress proxy
(docs/integrations.md, "Where a webhook may point"): whether the send would be tunnelled or go
direct (``NO_PROXY``), the private-address rule is applied to what the name resolves to, before
anything is connected; a name with one private address among public ones is refused; the proxy
is never asked for anything but the checked address.

Real sockets on 127.0.0.1 (``support.connect_proxy``), the real worker and records store; a
hostile DNS is played by replacing ``socket.getaddrinfo`` in this process.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.delivery.worker import DeliveryWorker, WorkerConfig, default_kinds
from llmtap.settings import Settings
from llmtap.stores.records.outbox import Delivery
from support.api_backend import ApiBackend
from support.connect_proxy import ConnectProxy
from support.probes import wait_for

INSIDE = [
    "http://localhost:{proxy_port}/hook",
    "http://127.0.0.1:{proxy_port}/hook",  # the egress proxy itself
    "http://[::ffff:7f00:1]:{proxy_port}/hook",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # metadata behind the NAT64 prefix
    "http://[2002:a9fe:a9fe::1]/latest/meta-data/",  # metadata inside 6to4
    "http://2130706433:{proxy_port}/hook",  # 127.0.0.1 written as one number
    "http://mixed.hooks.example/hook",  # resolves to a public and a private address
]


# the egress tests choose their proxy themselves, never the environment's
pytestmark = pytest.mark.usefixtures("no_proxy_environment")


@pytest.fixture
def hostile_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "mixed.hooks.example":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.9", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data", analytics=False) as opened:
        yield opened


@pytest.mark.usefixtures("hostile_dns")
@pytest.mark.parametrize("no_proxy", [[], ["*"]], ids=["tunnelled", "no_proxy-everything"])
def test_inside_addresses_are_refused_before_the_proxy_is_asked(
    backend: ApiBackend, no_proxy: list[str]
) -> None:
    org, _ = backend.new_org_key("acme")
    with ConnectProxy() as proxy:
        settings = Settings(
            data_dir=backend.settings.data_dir,
            outbox_retry_base_s=5,
            outbox_poll_s=0.05,
            outbox_timeout_s=2,
            outbox_allow_private_targets=False,
            upstream_proxy_url=proxy.url,
            upstream_no_proxy=no_proxy,
        )
        hooks = []
        for url in INSIDE:
            hook, _ = backend.records.integrations.create_webhook(
                org, url.format(proxy_port=proxy.port), 100.0, {}
            )
            hooks.append(hook)
            backend.records.outbox.enqueue(
                [], [Delivery(hook, org, "r-1", b"{}", "r-1")], int(time.time() * 1000)
            )
        worker = DeliveryWorker(
            backend.records.outbox, WorkerConfig.from_settings(settings), default_kinds(settings)
        )
        worker.start()
        try:
            wait_for(
                lambda: all(
                    backend.records.outbox.history(org, hook, 10)[0].attempts >= 1 for hook in hooks
                ),
                timeout_s=10,
                what="one attempt per webhook",
            )
        finally:
            worker.stop()
        for url, hook in zip(INSIDE, hooks, strict=True):
            (attempt,) = backend.records.outbox.history(org, hook, 10)
            assert attempt.last_error is not None, url
            assert attempt.last_error.startswith("refused:"), (url, attempt.last_error)
        assert proxy.targets() == []


@pytest.mark.parametrize(
    "url",
    [
        "https://h\u00f6oks.example/hook",
        "https://hooks.example/h\u00f6ok",
        "https://a\u3002b.example/",
    ],
)
def test_a_url_that_is_not_ascii_is_a_clear_400(backend: ApiBackend, url: str) -> None:
    _, key = backend.new_org_key("acme")
    answered = httpx.post(
        backend.url + "/v1/webhooks",
        json={"url": url},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answered.status_code == 400
    assert "ASCII" in answered.text
