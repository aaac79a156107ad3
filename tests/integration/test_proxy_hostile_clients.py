"""Hostile and careless clients on the proxy's client side, on raw sockets.

A head (request line + headers) over ``max_request_head_bytes`` gets a 431 before the client has
finished sending it; a head that does not arrive within ``header_read_timeout_s`` is closed;
chunked trailers never become request headers; only origin-form targets are accepted; and
nothing is written for a pipelined request before the previous response is complete.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httptools
import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.queue.factory import open_consumer
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import wait_for

PROMPT: Any = [{"role": "user", "content": "hello there"}]
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": PROMPT}).encode()


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def proxy_settings(tmp_path: Path, mock: MockUpstream, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock.url,
        anthropic_base_url=mock.url,
        **overrides,
    )


def chat_request(extra_headers: bytes = b"", target: bytes = b"/v1/chat/completions") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n%s"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (target, extra_headers, len(CHAT), CHAT)
    )


class Responses:
    """Reads whole HTTP/1.1 responses off a socket with httptools (framing checked for real)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[tuple[int, bytes]] = []
        self.interim: list[tuple[int, int]] = []
        """1xx responses: (status, bytes read so far when it was parsed)."""
        self.raw = b""
        self.closed = False
        self._body: list[bytes] = []

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self.interim.append((status, len(self.raw)))
        else:
            self.done.append((status, b"".join(self._body)))

    def read(self, count: int, timeout_s: float = 10.0) -> list[tuple[int, bytes]]:
        """Until ``count`` complete responses (or the peer closes); returns them all."""
        self.read_until(lambda: len(self.done) >= count, timeout_s)
        return self.done

    def read_until(self, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and not self.closed:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                break
            self.raw += data
            self.parser.feed_data(data)

    def wait_closed(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            else:
                self.raw += data
                self.parser.feed_data(data)
        return self.closed


def logged_records(settings: Settings) -> list[dict[str, Any]]:
    consumer = open_consumer(settings, group="check")
    try:
        return [json.loads(m.value) for m in consumer.poll_batch(100, 2.0)]
    finally:
        consumer.close()


def send_until_refused(sock: socket.socket, pieces: Iterator[bytes]) -> int:
    """Send ``pieces`` until the proxy stops taking them; how many bytes went out."""
    sent = 0
    for piece in pieces:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(piece)
    return sent


# -- item 2: the size of the request head -------------------------------------------------------


def huge_header_block(total: int) -> Iterator[bytes]:
    yield b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
    line = b"x-filler: " + b"a" * 1000 + b"\r\n"
    for _ in range(total // (len(line) * 64)):
        yield line * 64


def one_huge_header(total: int) -> Iterator[bytes]:
    yield b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-filler: "
    for _ in range(total // 65536):
        yield b"a" * 65536


def huge_url(total: int) -> Iterator[bytes]:
    yield b"POST /v1/chat/completions?q="
    for _ in range(total // 65536):
        yield b"a" * 65536


@pytest.mark.parametrize("pieces", [huge_header_block, one_huge_header, huge_url])
def test_a_200_mb_head_is_refused_with_431_long_before_it_is_sent(
    tmp_path: Path, mock: MockUpstream, pieces: Any
) -> None:
    settings = proxy_settings(tmp_path, mock)
    mock.clear()
    total = 200 * 1024 * 1024
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.settimeout(10)
        sent = send_until_refused(sock, pieces(total))
        responses = Responses(sock)
        (status, body), *_ = responses.read(1)
        assert responses.wait_closed()
        assert proxy.metrics.rejected_head_too_large == 1
        metrics = httpx.get(proxy.url + "/_llmtap/metrics").text
    assert status == 431
    assert json.loads(body)["error"]["code"] == "request_head_too_large"
    # refused within the first MiBs: the proxy stopped reading, the kernel buffers filled up
    assert sent < 32 * 1024 * 1024
    assert "llmtap_proxy_rejected_head_too_large_total 1" in metrics
    assert mock.requests == []
    assert logged_records(settings) == []


def test_a_head_just_under_the_limit_goes_through(tmp_path: Path, mock: MockUpstream) -> None:
    limit = 8 * 1024
    settings = proxy_settings(tmp_path, mock, max_request_head_bytes=limit)
    base = len(chat_request().split(b"\r\n\r\n", 1)[0]) + 4
    filler = b"x-filler: %s\r\n"
    pad = b"a" * (limit - base - len(filler % b""))
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(chat_request(filler % pad))
        sock.sendall(chat_request(filler % (pad + b"aa")))
        (first, _), (second, body) = Responses(sock).read(2)
    assert first == 200
    assert second == 431
    assert json.loads(body)["error"]["code"] == "request_head_too_large"


def test_too_many_headers_get_a_431(tmp_path: Path, mock: MockUpstream) -> None:
    settings = proxy_settings(tmp_path, mock, max_request_headers=50)
    fine = b"".join(b"x-h%d: v\r\n" % i for i in range(40))
    too_many = b"".join(b"x-h%d: v\r\n" % i for i in range(60))
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(chat_request(fine) + chat_request(too_many))
        (first, _), (second, _) = Responses(sock).read(2)
    assert (first, second) == (200, 431)


# -- item 8: heads that never finish ------------------------------------------------------------


def test_slowloris_connections_are_closed_and_others_still_served(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = proxy_settings(tmp_path, mock, header_read_timeout_s=1.0)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
    with ThreadedProxy(settings) as proxy:
        slow = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(20)]
        try:
            started = time.monotonic()
            for sock in slow:
                sock.sendall(head)
            # keep trickling one header byte at a time: activity must not extend the deadline
            for _ in range(3):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"x")
                answer = httpx.post(
                    proxy.url + "/v1/chat/completions",
                    content=CHAT,
                    headers={"authorization": "Bearer k", "content-type": "application/json"},
                )
                assert answer.status_code == 200
            readers = [Responses(sock) for sock in slow]
            assert all(r.wait_closed(timeout_s=5.0) for r in readers)
            elapsed = time.monotonic() - started
        finally:
            for sock in slow:
                sock.close()
        wait_for(lambda: proxy.metrics.head_timeouts == 20, timeout_s=5, what="20 timeouts")
    assert elapsed < 4.0
    for reader in readers:
        assert reader.raw.startswith(b"HTTP/1.1 408")
        assert reader.done and reader.done[0][0] == 408


def test_an_idle_connection_is_closed_silently_after_the_keepalive_timeout(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = proxy_settings(tmp_path, mock, header_read_timeout_s=1.0, keepalive_timeout_s=2.0)
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(chat_request())
        responses = Responses(sock)
        assert [s for s, _ in responses.read(1)] == [200]
        answered = time.monotonic()
        assert responses.wait_closed(timeout_s=6.0)
        idle = time.monotonic() - answered
        wait_for(lambda: proxy.metrics.idle_timeouts == 1, timeout_s=5, what="idle timeout")
    assert 1.5 < idle < 4.5  # the keep-alive timeout, not the (shorter) head timeout
    assert len(responses.done) == 1  # no 408 sent on an idle connection


def test_a_silent_new_connection_is_closed_after_the_header_timeout(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = proxy_settings(tmp_path, mock, header_read_timeout_s=1.0)
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        started = time.monotonic()
        assert Responses(sock).wait_closed(timeout_s=5.0)
    assert time.monotonic() - started < 3.5


# -- item 9: chunked trailers -------------------------------------------------------------------


def test_chunked_trailers_never_become_request_headers(tmp_path: Path, mock: MockUpstream) -> None:
    settings = proxy_settings(tmp_path, mock)
    mock.clear()
    wire = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n"
        b"Helicone-Property-Evil: x\r\n"
        b"Helicone-Target-URL: http://evil.example\r\n"
        b"X-Trailer-Canary: y\r\n\r\n" % (len(CHAT), CHAT)
    )
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(wire)
        (status, _), *_ = Responses(sock).read(1)
        wait_for(lambda: proxy.metrics.records_published == 1, what="the record")
    assert status == 200
    (seen,) = mock.requests
    assert seen.json() == json.loads(CHAT)
    assert not {"helicone-property-evil", "helicone-target-url", "x-trailer-canary"} & set(
        seen.headers
    )
    (record,) = logged_records(settings)
    assert "Evil" not in json.dumps(record.get("properties")) and "evil" not in json.dumps(
        record.get("properties")
    )
    assert "x-trailer-canary" not in json.dumps(record).lower()


# -- item 10: request targets and pipelined Expect ----------------------------------------------


@pytest.mark.parametrize(
    "target",
    [b"http://evil.example/v1/chat/completions", b"https://evil.example/v1/x", b"*"],
)
def test_only_origin_form_targets_are_accepted(
    tmp_path: Path, mock: MockUpstream, target: bytes
) -> None:
    settings = proxy_settings(tmp_path, mock)
    mock.clear()
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(chat_request(target=target))
        responses = Responses(sock)
        (status, body), *_ = responses.read(1)
    assert status == 400
    assert json.loads(body)["error"]["code"] == "invalid_request_target"
    assert mock.requests == []


def test_a_pipelined_expect_100_continue_waits_for_the_previous_response(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = proxy_settings(tmp_path, mock)
    streamed = json.dumps({"model": "gpt-4o-mini", "messages": PROMPT, "stream": True}).encode()
    first = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\nx-mock-chunks: 4\r\nx-mock-chunk-delay-ms: 150\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(streamed), streamed)
    )
    second_head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\nexpect: 100-continue\r\n"
        b"content-length: %d\r\n\r\n" % len(CHAT)
    )
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(first)
        sock.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:  # the first response is streaming now
            head += sock.recv(65536)
        sock.sendall(second_head)
        responses = Responses(sock)
        responses.raw = head
        responses.parser.feed_data(head)
        (one, stream), *_ = responses.read(1)
        assert one == 200 and b"data: [DONE]" in stream
        # the 100 for the second request comes once it is the current one, after the first
        responses.read_until(lambda: bool(responses.interim))
        sock.sendall(CHAT)
        responses.read(2)
    assert [s for s, _ in responses.done] == [200, 200]
    first_end = responses.raw.index(b"0\r\n\r\n") + 5
    assert responses.raw.count(b"100 Continue") == 1
    assert responses.raw.index(b"HTTP/1.1 100 Continue") == first_end


def test_expect_100_continue_is_still_answered_when_nothing_is_in_flight(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = proxy_settings(tmp_path, mock)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\nexpect: 100-continue\r\n"
        b"content-length: %d\r\n\r\n" % len(CHAT)
    )
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(head)
        sock.settimeout(5)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(CHAT)
        (status, _), *_ = Responses(sock).read(1)
    assert status == 200


def streamed_chat(chunk_delay_ms: int = 150) -> bytes:
    streamed = json.dumps({"model": "gpt-4o-mini", "messages": PROMPT, "stream": True}).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\nx-mock-chunks: 4\r\n"
        b"x-mock-chunk-delay-ms: %d\r\ncontent-length: %d\r\n\r\n%s"
        % (chunk_delay_ms, len(streamed), streamed)
    )


@pytest.mark.parametrize(
    ("second", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_a_refusal_of_a_pipelined_request_waits_for_the_streamed_answer_ahead(
    tmp_path: Path, mock: MockUpstream, second: bytes, status: int
) -> None:
    settings = proxy_settings(tmp_path, mock)
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(streamed_chat())
        sock.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:  # the first response is streaming now
            head += sock.recv(65536)
        sock.sendall(second)
        responses = Responses(sock)
        responses.raw = head
        responses.parser.feed_data(head)
        responses.read(2)
        assert responses.wait_closed()
    (first, stream), (refused, _) = responses.done
    assert first == 200 and b"data: [DONE]" in stream
    assert refused == status


def test_a_pipelined_request_over_the_body_limit_is_refused_not_sent_empty(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = proxy_settings(tmp_path, mock, max_request_body_bytes=len(CHAT) + 10)
    big = json.dumps({"model": "gpt-4o-mini", "messages": PROMPT, "pad": "x" * 100}).encode()
    second = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(big), big)
    )
    mock.clear()
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(chat_request() + second)
        responses = Responses(sock)
        responses.read(2)
    assert [s for s, _ in responses.done] == [200, 413]
    assert len(mock.requests) == 1


def test_an_upgrade_request_gets_one_400_and_is_not_forwarded(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = proxy_settings(tmp_path, mock)
    mock.clear()
    with (
        ThreadedProxy(settings) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sock.sendall(chat_request(b"connection: upgrade\r\nupgrade: websocket\r\n"))
        responses = Responses(sock)
        responses.read(1)
        assert responses.wait_closed()
    assert [s for s, _ in responses.done] == [400]
    assert json.loads(responses.done[0][1])["error"]["code"] == "upgrade_not_supported"
    assert responses.raw.count(b"HTTP/1.1") == 1
    assert mock.requests == []
