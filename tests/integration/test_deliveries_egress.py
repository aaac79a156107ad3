"""Webhook, alert and PostHog deliveries on a corporate network (docs/tls.md, "Egress proxy"):
they go through the same egress proxy (HTTP CONNECT, asked for the address the private-address
rule checked) and trust the same private CA as provider calls.

Real sockets: a CONNECT proxy on 127.0.0.1 (``support.connect_proxy``), a webhook receiver on
127.0.0.1 for plain HTTP, the mock upstream over TLS from the test CA for HTTPS, and a raw socket
playing a hostile proxy.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from llmtap.delivery.guard import parse_endpoint
from llmtap.delivery.http_post import SendFailed, post
from llmtap.delivery.worker import DeliveryWorker, WorkerConfig, default_kinds
from llmtap.outbound.egress import Egress, parse_proxy_url
from llmtap.outbound.trust import outbound_context
from llmtap.settings import Settings
from llmtap.stores.records.outbox import Delivery
from support.api_backend import ApiBackend
from support.connect_proxy import ConnectProxy
from support.probes import wait_for
from support.receiver import Receiver
from support.tls import Pki, TrustedMock

USER, PASSWORD = "alice", "s3cret"
BODY = b'{"request_id": "r-1"}'


# the egress tests choose their proxy themselves, never the environment's
pytestmark = pytest.mark.usefixtures("no_proxy_environment")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def egress() -> Iterator[ConnectProxy]:
    with ConnectProxy(credentials=(USER, PASSWORD)) as proxy:
        yield proxy


def test_a_plain_http_delivery_is_tunnelled_to_the_checked_address_with_credentials(
    receiver: Receiver, egress: ConnectProxy
) -> None:
    endpoint = parse_endpoint(receiver.url + "/hook")
    via = parse_proxy_url(egress.url_with(USER, PASSWORD), "test")
    answer = post(endpoint, "127.0.0.1", BODY, {}, 5, outbound_context(Settings()), via)
    assert answer.status == 200
    assert [r.body for r in receiver.accepted()] == [BODY]
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert [(s.target, s.proxy_authorization) for s in egress.seen] == [
        (f"127.0.0.1:{receiver.port}", expected)
    ]


def test_an_https_delivery_through_the_proxy_trusts_the_private_ca_and_checks_the_name(
    pki: Pki, egress: ConnectProxy, tmp_path: Path
) -> None:
    via = parse_proxy_url(egress.url_with(USER, PASSWORD), "test")
    with TrustedMock(pki) as mock:
        endpoint = parse_endpoint(f"https://localhost:{mock.port}/v1/chat/completions")
        body = json.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        ).encode()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-x"}
        trusted = outbound_context(Settings(upstream_ca_file=pki.ca_file), environ={})
        assert post(endpoint, "127.0.0.1", body, headers, 5, trusted, via).status == 200
        # the tunnel went to the checked address; TLS inside it named the URL's host
        assert egress.targets() == [f"127.0.0.1:{mock.port}"]

        untrusted = outbound_context(Settings(), environ={})
        with pytest.raises(SendFailed) as refused:
            post(endpoint, "127.0.0.1", body, headers, 5, untrusted, via)
        assert "TLS failed: certificate verify failed: unknown certificate authority" in str(
            refused.value
        )

    with TrustedMock(pki, cert=pki.wrong_host) as wrong:
        endpoint = parse_endpoint(f"https://localhost:{wrong.port}/v1/chat/completions")
        with pytest.raises(SendFailed) as mismatch:
            post(endpoint, "127.0.0.1", body, headers, 5, trusted, via)
        assert "hostname mismatch" in str(mismatch.value)


def test_a_proxy_that_refuses_or_is_gone_is_a_failed_send_that_names_it_without_secrets(
    receiver: Receiver, egress: ConnectProxy
) -> None:
    endpoint = parse_endpoint(receiver.url + "/hook")
    trust = outbound_context(Settings(), environ={})
    wrong = parse_proxy_url(egress.url_with(USER, "not-the-password"), "test")
    with pytest.raises(SendFailed) as refused:
        post(endpoint, "127.0.0.1", BODY, {}, 5, trust, wrong)
    message = str(refused.value)
    assert "answered 407 Proxy Authentication Required to CONNECT" in message
    assert "not-the-password" not in message and USER not in message
    assert receiver.received == []

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        gone_port = unused.getsockname()[1]
    gone = parse_proxy_url(f"http://{USER}:{PASSWORD}@127.0.0.1:{gone_port}", "test")
    with pytest.raises(SendFailed) as unreachable:
        post(endpoint, "127.0.0.1", BODY, {}, 5, trust, gone)
    assert f"cannot reach egress proxy http://127.0.0.1:{gone_port}" in str(unreachable.value)
    assert PASSWORD not in str(unreachable.value)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n", "sent bytes after its answer"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "something that is not HTTP"),
        (b"HTTP/1.1 200 OK\r\nx: " + b"a" * 9000, "a head larger than the limit"),
        (b"HTTP/1.1 200 OK\r\n", "closed the connection before answering CONNECT"),
    ],
)
def test_a_hostile_proxy_answer_is_refused_and_nothing_is_sent_through_it(
    answer: bytes, problem: str
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(65536))
            try:
                conn.sendall(answer)
                # the client may already have refused a too-long head and closed
                conn.shutdown(socket.SHUT_WR)
                time.sleep(0.2)  # keep the socket open while the client reads
                conn.settimeout(1)
                while data := conn.recv(65536):
                    got.append(data)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    via = parse_proxy_url(f"http://127.0.0.1:{listener.getsockname()[1]}", "test")
    endpoint = parse_endpoint("http://hooks.example/hook")
    with pytest.raises(SendFailed) as refused:
        post(endpoint, "203.0.113.9", BODY, {}, 5, outbound_context(Settings(), environ={}), via)
    thread.join(5)
    listener.close()
    assert problem in str(refused.value)
    assert got[0].startswith(b"CONNECT 203.0.113.9:80 HTTP/1.1\r\n")
    assert b"".join(got[1:]) == b""  # the webhook's body never went through


def test_the_worker_sends_through_the_settings_proxy_and_skips_it_for_no_proxy_hosts(
    tmp_path: Path, receiver: Receiver, egress: ConnectProxy
) -> None:
    with ApiBackend(tmp_path / "data", analytics=False) as backend:
        org, _ = backend.new_org_key("acme")
        settings = Settings(
            data_dir=backend.settings.data_dir,
            outbox_retry_base_s=0.05,
            outbox_retry_max_s=0.2,
            outbox_poll_s=0.05,
            outbox_timeout_s=5,
            outbox_allow_private_targets=True,
            upstream_proxy_url=egress.url_with(USER, PASSWORD),
        )
        config = WorkerConfig.from_settings(settings)
        assert config.egress is not None
        target, _ = backend.records.integrations.create_webhook(
            org, receiver.url + "/hook", 100.0, {}
        )
        outbox = backend.records.outbox
        outbox.enqueue([], [Delivery(target, org, "r-1", BODY, "r-1")], int(time.time() * 1000))
        worker = DeliveryWorker(outbox, config, default_kinds(settings))
        worker.start()
        try:
            wait_for(lambda: len(receiver.accepted()) == 1, timeout_s=10, what="the delivery")
            assert egress.targets() == [f"127.0.0.1:{receiver.port}"]
        finally:
            worker.stop()

        bypass = replace(
            config,
            egress=Egress.from_settings(
                settings.model_copy(update={"upstream_no_proxy": ["127.0.0.1"]})
            ),
        )
        outbox.enqueue([], [Delivery(target, org, "r-2", BODY, "r-2")], int(time.time() * 1000))
        worker = DeliveryWorker(outbox, bypass, default_kinds(settings))
        worker.start()
        try:
            wait_for(lambda: len(receiver.accepted()) == 2, timeout_s=10, what="the second")
            assert len(egress.targets()) == 1  # the second went direct
        finally:
            worker.stop()
