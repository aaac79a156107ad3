"""The proxy in-process (``ThreadedProxy``) with parts of llmtap broken on purpose.

Fail-open (docs/architecture.md, invariant 1): whatever breaks in llmtap's own logging path, the
call goes through and the failure is counted. The relay guard at connect time (invariant 8),
timeouts, pipelining.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmtap.proxy.exchange import Exchange
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.server import ThreadedProxy, build_shipper
from llmtap.queue.factory import open_consumer
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import wait_for
from support.tls import TrustedMock, upstream_trust

PROMPT: Any = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def mock(request: pytest.FixtureRequest) -> Iterator[MockUpstream]:
    """The mock upstream over plain HTTP, or over TLS for tests parametrized with "https"."""
    if getattr(request, "param", "http") == "https":
        with TrustedMock(request.getfixturevalue("pki")) as tls_upstream:
            yield tls_upstream
        return
    with MockUpstream() as upstream:
        yield upstream


def proxy_settings(tmp_path: Path, mock: MockUpstream, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock.url,
        anthropic_base_url=mock.url,
        **{**upstream_trust(mock), **overrides},
    )


def chat(url: str, **extra: Any) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, **extra)


def test_calls_succeed_while_the_queue_is_broken_and_records_arrive_once_it_is_back(
    tmp_path: Path, mock: MockUpstream
) -> None:
    blocker = tmp_path / "queue-home"
    blocker.write_text("a file where the queue's directory should be")
    settings = proxy_settings(tmp_path, mock, queue_url=f"sqlite:///{blocker}/queue.db")
    with ThreadedProxy(settings) as proxy:
        for _ in range(5):
            assert chat(proxy.url).choices
        wait_for(lambda: proxy.metrics.records_spooled == 5, what="5 spooled records")
        assert proxy.metrics.records_published == 0 and proxy.metrics.records_dropped == 0

        blocker.unlink()
        blocker.mkdir()  # the queue can be opened again: the spool drains into it
        wait_for(lambda: proxy.metrics.spool_replayed == 5, timeout_s=20, what="spool replay")
        assert chat(proxy.url).choices
        wait_for(lambda: proxy.metrics.records_published == 1, what="a direct publish")

    consumer = open_consumer(settings, group="check")
    try:
        messages = consumer.poll_batch(100, 2.0)
    finally:
        consumer.close()
    assert len({m.key for m in messages}) == 6


def test_calls_succeed_when_the_body_store_is_broken(tmp_path: Path, mock: MockUpstream) -> None:
    not_a_dir = tmp_path / "bodies"
    not_a_dir.write_text("a file where the bodies directory should be")
    settings = proxy_settings(tmp_path, mock, bodies_url=f"file://{not_a_dir}")
    with ThreadedProxy(settings) as proxy:
        assert chat(proxy.url).choices
        wait_for(lambda: proxy.metrics.records_published == 1, what="the record, without bodies")
        assert proxy.metrics.shipper_errors >= 1
    consumer = open_consumer(settings, group="check")
    try:
        (message,) = consumer.poll_batch(10, 2.0)
    finally:
        consumer.close()
    record = json.loads(message.value)
    assert "body_error" in record["extra"]
    assert "key" not in record["response_body"]


class ExplodingShipper:
    """Stands in for a shipper with a bug: every hand-off raises."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def start(self) -> None:
        self.real.start()

    def submit(self, exchange: Exchange) -> None:
        raise RuntimeError("shipper bug")

    def close(self, timeout_s: float = 30.0) -> None:
        self.real.close(timeout_s)


def test_a_broken_shipper_never_touches_the_call(tmp_path: Path, mock: MockUpstream) -> None:
    settings = proxy_settings(tmp_path, mock)
    shipper: Any = ExplodingShipper(build_shipper(settings, ProxyMetrics()))
    with ThreadedProxy(settings, shipper=shipper) as proxy:
        for _ in range(3):
            assert chat(proxy.url).choices
        stream = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
        assert list(stream.chat.completions.create(model="m", messages=PROMPT, stream=True))
        assert proxy.metrics.internal_errors == 4


def test_private_targets_are_refused_at_connect_unless_allowed(
    tmp_path: Path, mock: MockUpstream
) -> None:
    # "localhost" is allow-listed by name, but resolves to loopback: the guard still refuses.
    allowed = [f"localhost:{mock.port}"]
    target = {"Helicone-Target-URL": f"http://localhost:{mock.port}"}
    body = {"model": "gpt-4o-mini", "messages": PROMPT}
    settings = proxy_settings(tmp_path, mock, allowed_target_hosts=allowed)
    with ThreadedProxy(settings) as proxy:
        refused = httpx.post(
            proxy.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer k", **target},
        )
    assert refused.status_code == 403
    assert "private" in refused.json()["error"]["message"]

    shutil.rmtree(tmp_path / "data")
    settings = proxy_settings(
        tmp_path, mock, allowed_target_hosts=allowed, allow_private_targets=True
    )
    with ThreadedProxy(settings) as proxy:
        allowed_call = httpx.post(
            proxy.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer k", **target},
        )
    assert allowed_call.status_code == 200
    assert allowed_call.json()["object"] == "chat.completion"


@pytest.mark.parametrize("mock", ["http", "https"], indirect=True)
def test_idle_timeout_answers_504_before_the_head_and_cuts_a_stream_after(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = proxy_settings(tmp_path, mock, idle_timeout_s=1.0)
    with ThreadedProxy(settings) as proxy:
        late = httpx.post(
            proxy.url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": PROMPT},
            headers={"authorization": "Bearer k", "x-mock-latency-ms": "4000"},
            timeout=30,
        )
        assert late.status_code == 504
        assert late.json()["error"]["code"] == "upstream_idle_timeout"

        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.APIError):
            list(
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=PROMPT,
                    stream=True,
                    extra_headers={"x-mock-chunks": "3", "x-mock-chunk-delay-ms": "4000"},
                )
            )
        wait_for(lambda: proxy.metrics.upstream_errors == 2, what="two timeouts counted")


def test_pipelined_requests_are_answered_in_order(tmp_path: Path, mock: MockUpstream) -> None:
    settings = proxy_settings(tmp_path, mock)
    bodies = [json.dumps({"model": f"model-{i}", "messages": PROMPT}).encode() for i in range(3)]
    wire = b"".join(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(b), b)
        for b in bodies
    )
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(wire)
        received = b""
        sock.settimeout(10)
        while received.count(b"HTTP/1.1 200") < 3 or not received.endswith(b"}"):
            received += sock.recv(65536)
    models = [
        part.split(b'"model":"', 1)[1].split(b'"', 1)[0]
        for part in received.split(b"HTTP/1.1 200")[1:]
    ]
    assert models == [b"model-0", b"model-1", b"model-2"]


def test_malformed_http_gets_a_provider_shaped_400(tmp_path: Path, mock: MockUpstream) -> None:
    settings = proxy_settings(tmp_path, mock)
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        sock.settimeout(5)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "malformed_request"


@pytest.mark.parametrize(
    ("request_line", "connection", "closes"),
    [
        (b"HTTP/1.1", b"", False),
        (b"HTTP/1.1", b"connection: close\r\n", True),
        (b"HTTP/1.0", b"", True),
        (b"HTTP/1.0", b"connection: keep-alive\r\n", False),
    ],
)
def test_client_connections_close_when_the_client_asks(
    tmp_path: Path, mock: MockUpstream, request_line: bytes, connection: bytes, closes: bool
) -> None:
    body = json.dumps({"model": "gpt-4o-mini", "messages": PROMPT}).encode()
    wire = (
        b"POST /v1/chat/completions %s\r\nhost: x\r\nauthorization: Bearer k\r\n%s"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (request_line, connection, len(body), body)
    )
    settings = proxy_settings(tmp_path, mock)
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(wire)
        sock.settimeout(10)
        received = b""
        while not received.endswith(b"}"):
            received += sock.recv(65536)
        head = received.split(b"\r\n\r\n", 1)[0].lower()
        assert received.startswith(b"HTTP/1.1 200")
        assert (b"connection: close" in head) is closes
        sock.settimeout(2)
        try:
            after = sock.recv(1)  # b"" once the proxy closed its side
        except TimeoutError:
            after = None  # still open, waiting for the next request
        assert (after == b"") is closes
