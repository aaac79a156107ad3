"""While other calls are in flight, what one provider read makes the proxy write leaves in one
send to the client; a call alone gets each piece at once.

The real ``UpstreamConnection``, ``Exchange`` and ``ClientConnection``, with recording transports
in place of sockets: a stream's head and the events that came in the same read go out in one
write (not one each), and nothing is held past the read it came in (a stream still streams).
"""

from __future__ import annotations

import time
from typing import Any

from llmtap.capture.tap import HeaderList
from llmtap.proxy.client import ClientConnection
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.limits import ClientLimits
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.upstream import UpstreamConnection


class Transport:
    """Records every write and whether (and when) it was closed."""

    def __init__(self, log: list[tuple[str, bytes]]) -> None:
        self.log = log

    def write(self, data: bytes) -> None:
        self.log.append(("write", bytes(data)))

    def close(self) -> None:
        self.log.append(("close", b""))

    def abort(self) -> None:
        self.log.append(("abort", b""))

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class App:
    """What the client connection and the exchange need of the app."""

    draining = False
    max_capture = 1 << 20

    def __init__(self, calls_in_flight: int) -> None:
        self.calls_in_flight = calls_in_flight
        self.limits = ClientLimits(
            max_body=1 << 20,
            max_head=1 << 16,
            max_headers=100,
            max_pipelined=8,
            head_timeout_ns=10**10,
            body_timeout_ns=10**10,
            keepalive_timeout_ns=10**10,
        )
        self.metrics = ProxyMetrics()
        self.connections: set[Any] = set()
        self.finished: list[Exchange] = []

    def finish(self, exchange: Exchange) -> None:
        self.finished.append(exchange)

    def dispatch(self, exchange: Exchange) -> None:
        raise AssertionError("no request is parsed here")

    def reject(self, exchange: Exchange, status: int, code: str, message: str) -> None:
        raise AssertionError("no request is parsed here")


class Pool:
    max_head_bytes = 1 << 16
    drain_timeout_s = 1.0
    drain_max_bytes = 1 << 20

    def __init__(self) -> None:
        self.released: list[UpstreamConnection] = []

    def connect(self, exchange: object) -> None:
        raise AssertionError("no replay here")

    def release(self, conn: UpstreamConnection) -> None:
        self.released.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        pass


def setup(
    headers: HeaderList | None = None, calls_in_flight: int = 5
) -> tuple[UpstreamConnection, list[tuple[str, bytes]], App, Pool]:
    app = App(calls_in_flight)
    sent: list[tuple[str, bytes]] = []
    client = ClientConnection(app)
    client.transport = Transport(sent)  # type: ignore[assignment]
    exchange = Exchange(
        app,
        client,
        b"POST",
        b"/v1/chat/completions",
        headers or [(b"host", b"api.openai.com")],
        b"{}",
        time.perf_counter_ns(),
        time.time() * 1000,
        client_closes=False,
    )
    client.current = exchange
    pool = Pool()
    conn = UpstreamConnection(pool, ("http", "127.0.0.1", 1))
    conn.transport = Transport([])  # type: ignore[assignment]
    conn.start(exchange, reused=False)
    return conn, sent, app, pool


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENTS = [b'data: {"n": %d}\n\n' % i for i in range(5)]
END = b"0\r\n\r\n"


def writes(sent: list[tuple[str, bytes]]) -> list[bytes]:
    return [data for kind, data in sent if kind == "write"]


def test_a_stream_that_came_in_one_read_leaves_in_one_write() -> None:
    conn, sent, app, pool = setup()
    conn.data_received(HEAD + b"".join(chunk(e) for e in EVENTS) + END)
    (whole,) = writes(sent)
    assert whole.startswith(b"HTTP/1.1 200 OK\r\n")
    for event in EVENTS:
        assert chunk(event) in whole
    assert whole.endswith(END)
    assert len(app.finished) == 1 and pool.released == [conn]


def test_each_read_leaves_when_it_is_handled_nothing_waits_for_the_next() -> None:
    conn, sent, app, _ = setup()
    conn.data_received(HEAD + chunk(EVENTS[0]))
    first = writes(sent)
    assert len(first) == 1  # the head and the first event, together, before any later read
    assert first[0].startswith(b"HTTP/1.1 200") and first[0].endswith(chunk(EVENTS[0]))
    conn.data_received(chunk(EVENTS[1]) + chunk(EVENTS[2]))
    assert writes(sent)[1:] == [chunk(EVENTS[1]) + chunk(EVENTS[2])]
    conn.data_received(END)
    assert writes(sent)[2:] == [END]
    assert len(app.finished) == 1


def test_a_head_alone_in_its_read_is_not_held_for_the_first_event() -> None:
    conn, sent, _, _ = setup()
    conn.data_received(HEAD)
    assert len(writes(sent)) == 1 and writes(sent)[0].startswith(b"HTTP/1.1 200")


def test_an_answer_that_closes_the_client_is_written_before_the_close() -> None:
    conn, sent, _, _ = setup()
    exchange = conn.exchange
    assert isinstance(exchange, Exchange)
    exchange.client_closes = True
    conn.data_received(HEAD + chunk(EVENTS[0]) + END)
    assert [kind for kind, _ in sent] == ["write", "close"]
    assert b"connection: close" in sent[0][1] and sent[0][1].endswith(END)


def test_a_provider_that_breaks_the_protocol_mid_read_still_flushes_what_was_relayed() -> None:
    conn, sent, app, _ = setup()
    conn.data_received(HEAD + chunk(EVENTS[0]) + b"zz\r\nnot a chunk size")
    written = b"".join(writes(sent))
    assert written.startswith(b"HTTP/1.1 200") and chunk(EVENTS[0]) in written
    assert [kind for kind, _ in sent][-1] == "close"  # the cut response: the client is closed
    assert len(app.finished) == 1


def test_a_call_alone_gets_each_piece_at_once() -> None:
    # nothing else waits for the loop: the first event leaves before the rest of the read is
    # handled (its first token earliest), as without corking
    conn, sent, app, _ = setup(calls_in_flight=1)
    conn.data_received(HEAD + b"".join(chunk(e) for e in EVENTS) + END)
    out = writes(sent)
    assert len(out) == 1 + len(EVENTS) + 1
    assert out[0].startswith(b"HTTP/1.1 200") and out[1:-1] == [chunk(e) for e in EVENTS]
    assert out[-1] == END and len(app.finished) == 1
