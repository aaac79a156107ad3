"""A request body trickled in a byte at a time: the proxy answers 408 once
``body_read_timeout_s`` has passed since the head, however steadily the bytes come."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httptools
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import wait_for

HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
    b"content-type: application/json\r\ncontent-length: 100\r\n\r\n"
)


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


class Answer:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.body = b""

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()


def trickle_until_closed(sock: socket.socket, pieces: int) -> tuple[bytes, float]:
    """Send one body byte every 200 ms (at most ``pieces``) until the proxy closes the
    connection; what it sent back, and when it closed (monotonic)."""
    received = b""
    sock.settimeout(0.2)
    for _ in range(pieces):
        try:
            sock.sendall(b"x")
            while data := sock.recv(65536):
                received += data
            return received, time.monotonic()
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return received, time.monotonic()
    raise AssertionError(f"still open after {pieces} pieces; got {received!r}")


def test_a_trickled_body_gets_a_408_after_the_body_timeout(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock.url,
        body_read_timeout_s=1.0,
    )
    mock.clear()
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(HEAD)
        head_sent = time.monotonic()
        received, closed = trickle_until_closed(sock, pieces=25)  # 5 s at most, body 100
        wait_for(lambda: proxy.metrics.body_timeouts == 1, timeout_s=5, what="the timeout")
    answer = Answer()
    answer.parser.feed_data(received)
    assert answer.status == 408
    error = json.loads(answer.body)["error"]
    assert error["code"] == "request_timeout" and "LLMTAP_BODY_READ_TIMEOUT_S" in error["message"]
    # the timeout (1 s) and at most one sweep (1 s) after the head, not the body's 20 s
    assert closed - head_sent < 3.0
    assert mock.requests == []


def test_a_body_that_arrives_in_time_is_served(tmp_path: Path, mock: MockUpstream) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock.url,
        body_read_timeout_s=1.0,
    )
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    head = HEAD.replace(b"content-length: 100", b"content-length: %d" % len(body))
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        # two requests on one keep-alive connection, each body sent after a pause shorter
        # than the timeout: the clock is per body, not per connection
        for _ in range(2):
            sock.sendall(head)
            sock.settimeout(0.6)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # nothing is answered before the body is in
            sock.sendall(body)
            sock.settimeout(10)
            answer = Answer()
            while not answer.status:
                answer.parser.feed_data(sock.recv(65536))
            assert answer.status == 200
        assert proxy.metrics.body_timeouts == 0
