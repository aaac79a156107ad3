"""Hypothesis over the proxy's request parser path: hostile bytes into a real ``ClientConnection``.

The connection, the app (``ProxyApp``: dispatch, refusals, the sweep) and the exchanges are the
real ones; only the two network edges are stand-ins, because a socket and a provider per example
would make a few hundred examples take minutes: a transport that records what the proxy writes
(and honours pause/resume like uvloop's), and an upstream pool that answers every forwarded
request at once. The wire-level behaviour of the same code is covered on real sockets in
``tests/integration/test_proxy_hostile_clients.py``.

Property, for any bytes split anywhere: nothing raises out of the protocol callbacks; what the
client reads is a sequence of whole, well-formed HTTP/1.1 responses; a connection left waiting
is closed by the sweep once its deadline passes; no exchange is left in flight; and the app
still answers a plain request on a new connection.
"""

from __future__ import annotations

import itertools
from collections import deque
from pathlib import Path
from typing import Any

import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtap.proxy.app import ProxyApp
from llmtap.proxy.client import ClientConnection
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.routing import Router
from llmtap.settings import Settings


class RecordingTransport:
    """What uvloop's transport does for the protocol, minus the socket."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class InstantPool:
    """Answers every forwarded request at once, as a provider would: 200 with a JSON body."""

    def send(self, exchange: Exchange) -> None:
        body = b"" if exchange.method == b"HEAD" else b'{"ok":true}'
        exchange.on_response_head(
            200,
            b"OK",
            [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            False,
        )
        if body:
            exchange.on_response_body(body)
        exchange.on_response_complete()

    def close(self) -> None:
        pass


class Sink:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def submit(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)


class Responses:
    """Parses what the client read; fails on anything that is not whole HTTP/1.1 responses."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.statuses: list[int] = []
        self.in_message = False

    def on_message_begin(self) -> None:
        self.in_message = True

    def on_message_complete(self) -> None:
        self.in_message = False
        self.statuses.append(self.parser.get_status_code())

    def parse(self, data: bytes) -> list[int]:
        self.parser.feed_data(data)
        assert not self.in_message, f"a response was cut short: {data[-200:]!r}"
        return self.statuses


def make_app(tmp_path: Path) -> ProxyApp:
    config = Settings(
        data_dir=tmp_path,
        max_request_body_bytes=4096,
        max_request_head_bytes=2048,
        max_request_headers=20,
        header_read_timeout_s=5.0,
    )
    return ProxyApp(config, Router(config), InstantPool(), Sink(), ProxyMetrics())  # type: ignore[arg-type]


def run_connection(app: ProxyApp, pieces: list[bytes]) -> tuple[ClientConnection, bytes]:
    """Feed ``pieces`` as uvloop would (nothing while paused), then let the sweep time it out."""
    connection = ClientConnection(app)
    transport = RecordingTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    waiting: deque[bytes] = deque(pieces)
    while waiting and not transport.closed and not transport.paused:
        connection.data_received(waiting.popleft())
    if not transport.closed and connection.current is None:
        connection.deadline_ns = connection.deadline_ns and 1  # overdue now, if it has one
        app.sweep()
    if transport.closed:
        connection.connection_lost(None)
    return connection, bytes(transport.written)


PLAIN = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
    b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
)

METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"PRI", b"G\0T"]
TARGETS = [
    b"/v1/chat/completions",
    b"/anthropic/v1/messages",
    b"/_llmtap/health",
    b"/_llmtap/metrics",
    b"/router/nope/v1/x",
    b"http://evil.example/v1/chat/completions",
    b"*",
    b"evil.example:443",
    b"/a?b=%00&c=\xff",
    b"",
]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"", b"http/1.1"]
NAMES = [
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"expect",
    b"connection",
    b"upgrade",
    b"helicone-target-url",
    b"helicone-property-x",
    b"helicone-auth",
    b"anthropic-version",
    b"x-custom",
]
VALUES = [b"2", b"-1", b"99999999999999999999", b"chunked", b"gzip, chunked", b"100-continue"]
VALUES += [b"close", b"keep-alive", b"websocket", b"http://evil.example", b"2023-06-01"]

wire_bytes = st.binary(max_size=40)
# header pieces that stress the grammar: CR, LF, NUL, obs-fold, bare colons and spaces
nasty = st.sampled_from([b"\r", b"\n", b"\0", b"\r\n ", b"\r\n\t", b":", b" ", b"\xff", b"\r\n"])
field_text = st.lists(st.one_of(st.binary(max_size=12), nasty), max_size=4).map(b"".join)


@st.composite
def headers(draw: Any) -> bytes:
    fields = draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from(NAMES), field_text),
                st.one_of(st.sampled_from(VALUES), field_text),
            ),
            max_size=24,
        )
    )
    return b"".join(b"%s: %s\r\n" % pair for pair in fields)


@st.composite
def chunked_body(draw: Any) -> bytes:
    chunks = draw(st.lists(st.binary(min_size=1, max_size=64), max_size=4))
    sizes = [b"%x" % len(c) for c in chunks]
    if draw(st.booleans()):  # lie about one size, or add an extension
        sizes = [
            draw(st.sampled_from([s, s + b";ext=1", b"fffffffffffffffff", b"-1", b"zz"]))
            for s in sizes
        ]
    out = b"".join(b"%s\r\n%s\r\n" % pair for pair in zip(sizes, chunks, strict=True))
    trailers = draw(st.one_of(st.just(b""), headers()))
    return out + b"0\r\n" + trailers + b"\r\n"


@st.composite
def request(draw: Any) -> bytes:
    line = b"%s %s %s\r\n" % (
        draw(st.one_of(st.sampled_from(METHODS), wire_bytes)),
        draw(st.one_of(st.sampled_from(TARGETS), wire_bytes)),
        draw(st.sampled_from(VERSIONS)),
    )
    head = draw(headers())
    framing = draw(st.sampled_from(["none", "length", "chunked", "huge_header"]))
    body = draw(st.binary(max_size=64))
    if framing == "length":
        head += b"content-length: %d\r\n" % len(body)
    elif framing == "chunked":
        head += b"transfer-encoding: chunked\r\n"
        body = draw(chunked_body())
    elif framing == "huge_header":
        head += b"x-big: " + b"a" * draw(st.integers(1500, 5000)) + b"\r\n"
        body = b""
    else:
        body = b""
    return line + head + b"\r\n" + body


@st.composite
def wire(draw: Any) -> list[bytes]:
    data = b"".join(draw(st.lists(request(), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(0, 3))):  # mutate: flip, insert or delete a byte
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = bytes([draw(st.integers(0, 255))])
        if kind == "flip":
            data = data[:at] + byte + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + byte + data[at:]
        else:
            data = data[:at] + data[at + 1 :]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=6))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@given(pieces=wire())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_get_whole_responses_or_a_close(
    tmp_path_factory: Any, pieces: list[bytes]
) -> None:
    app = make_app(tmp_path_factory.getbasetemp())
    connection, written = run_connection(app, pieces)
    statuses = Responses().parse(written)
    assert all(100 <= s <= 599 for s in statuses)
    assert connection.closed or connection.current is not None or connection.deadline_ns == 0
    assert not app.active, "an exchange was left in flight"
    assert app.connections <= {connection}

    _, answer = run_connection(app, [PLAIN])
    assert Responses().parse(answer)[0] == 200


def test_the_fuzz_harness_sees_what_the_wire_tests_see(tmp_path: Path) -> None:
    """The stand-ins behave like the real edges: a plain call, a pipelined pair, a refusal."""
    app = make_app(tmp_path)
    _, written = run_connection(app, [PLAIN[:10], PLAIN[10:] + PLAIN])
    assert Responses().parse(written) == [200, 200]
    # one header field growing over several reads: httptools holds it, the proxy counts it
    head = [b"GET / HTTP/1.1\r\nx-big: ", b"a" * 1500, b"a" * 1500]
    connection, written = run_connection(app, head)
    assert Responses().parse(written) == [431] and connection.closed
    upgrade = b"GET /ws HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    connection, written = run_connection(app, [upgrade + PLAIN])
    assert Responses().parse(written) == [400] and connection.closed
    connection, written = run_connection(app, [b"GET /v1/models HTTP/1.1\r\nhost: x"])
    assert Responses().parse(written) == [408] and connection.closed
