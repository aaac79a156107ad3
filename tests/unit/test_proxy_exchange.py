"""One ``Exchange`` driven through its seams, without sockets.

The exchange is the real one; the client connection, the provider connection and the app are
plain objects that keep the promises stated in ``llmtap.proxy.types`` (mypy checks them against
those Protocols), and record, in one ordered log, every byte written to the client, the
hand-off to logging and the end of the answer. What the client read is parsed back with
httptools, and the handed-off exchange is turned into the record the shipper would log
(``build_record``). The same paths run on real sockets in ``tests/integration/test_proxy_*.py``;
here each case is a few microseconds and names the one promise it holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httptools
import msgspec
import pytest

from llmtap.capture.tap import HeaderList, TapHeaders
from llmtap.proxy.capture import Captured, build_record
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.routing import Upstream
from llmtap.proxy.stream_end import MAX_TAIL_BYTES
from llmtap.proxy.stream_usage import UsageChunkFilter
from llmtap.proxy.types import UpstreamExchange

REQUEST_ID = "5f0c7a2e-8d4b-4c1e-9a57-3b2f6d1e0c88"
Event = tuple[str, object]
"""("write", bytes) | ("finish", None) | ("done", keep_alive) | ("abort", None) | ("drain", None)"""


class FakeClient:
    """The client connection: records what is written to it and how the answer ended."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.writing_paused = False

    def write(self, data: bytes) -> None:
        self.events.append(("write", data))

    def cork(self) -> None:
        pass  # the provider connection corks; these tests drive the exchange without one

    def uncork(self) -> None:
        pass

    def exchange_done(self, keep_alive: bool) -> None:
        self.events.append(("done", keep_alive))


class FakeApp:
    """The app: turns the handed-off exchange into its record at the moment of the hand-off."""

    def __init__(self, events: list[Event], draining: bool, max_capture: int) -> None:
        self.events = events
        self.draining = draining
        self.max_capture = max_capture
        self.handed_off: list[Captured] = []

    def finish(self, exchange: Exchange) -> None:
        self.events.append(("finish", None))
        self.handed_off.append(build_record(exchange, None, max_decoded_bytes=1 << 20))


class FakeProvider:
    """The provider connection: takes the exchange as the pool's ``start`` does and drives it
    through ``UpstreamExchange`` only, as ``UpstreamConnection`` does."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.exchange: UpstreamExchange | None = None
        self.paused = False

    def start(self, exchange: UpstreamExchange) -> None:
        self.exchange = exchange
        exchange.conn = self
        self.paused = exchange.client.writing_paused

    def abort(self) -> None:
        self.events.append(("abort", None))
        self.exchange = None

    def drain(self) -> None:
        self.events.append(("drain", None))
        self.exchange = None

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def head(self, status: int, headers: HeaderList, chunked: bool = False) -> None:
        assert self.exchange is not None
        self.exchange.on_response_head(status, b"OK" if status == 200 else b"X", headers, chunked)

    def body(self, *pieces: bytes) -> None:
        for piece in pieces:
            assert self.exchange is not None
            self.exchange.on_response_body(piece)

    def complete(self) -> None:
        assert self.exchange is not None
        exchange, self.exchange = self.exchange, None
        exchange.on_response_complete()

    def fail(self, status: int, code: str, message: str) -> None:
        assert self.exchange is not None
        exchange, self.exchange = self.exchange, None
        exchange.fail(status, code, message)


@dataclass
class Call:
    exchange: Exchange
    client: FakeClient
    app: FakeApp
    provider: FakeProvider
    events: list[Event] = field(default_factory=list)

    @property
    def written(self) -> bytes:
        return b"".join(data for _, data in self.events if isinstance(data, bytes))

    @property
    def record(self) -> Captured:
        (captured,) = self.app.handed_off
        return captured

    def kinds(self) -> list[str]:
        """The log with consecutive writes folded into one: the order of what happened."""
        out: list[str] = []
        for kind, _ in self.events:
            if not (kind == "write" and out and out[-1] == "write"):
                out.append(kind)
        return out


def call(
    method: bytes = b"POST",
    *,
    client_closes: bool = False,
    draining: bool = False,
    provider: str = "openai",
    usage_filter: bool = False,
    max_capture: int = 1 << 20,
) -> Call:
    """An exchange as ``ProxyApp.dispatch`` leaves it: routed, its request written upstream."""
    events: list[Event] = []
    client, app, conn = (
        FakeClient(events),
        FakeApp(events, draining, max_capture),
        FakeProvider(events),
    )
    # mypy holds the fakes to the Protocols here (ExchangeHost, ClientSide) and in
    # FakeProvider.start (UpstreamSide, and Exchange to UpstreamExchange)
    exchange = Exchange(
        app,
        client,
        method,
        b"/v1/chat/completions",
        [(b"content-type", b"application/json"), (b"authorization", b"Bearer sk-test")],
        b'{"model":"m"}',
        time.perf_counter_ns(),
        time.time() * 1000.0,
        client_closes,
    )
    exchange.tap = TapHeaders(request_id=REQUEST_ID)
    exchange.upstream = Upstream(provider, "https", "api.example.com", 443, "", False)
    exchange.upstream_path = b"/v1/chat/completions"
    exchange.request_bytes = b"POST /v1/chat/completions HTTP/1.1\r\n\r\n{}"
    if usage_filter:
        exchange.usage_filter = UsageChunkFilter()
    conn.start(exchange)
    return Call(exchange, client, app, conn, events)


@dataclass
class Response:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    complete: bool = False


def read_response(data: bytes) -> Response:
    """The one response the client read, parsed as an HTTP client would."""
    response = Response()

    class Callbacks:
        def on_header(self, name: bytes, value: bytes) -> None:
            response.headers[name.lower()] = value

        def on_body(self, body: bytes) -> None:
            response.body += body

        def on_message_complete(self) -> None:
            response.complete = True

    parser = httptools.HttpResponseParser(Callbacks())
    parser.feed_data(data)
    response.status = parser.get_status_code()
    return response


JSON_BODY = (
    b'{"id":"chatcmpl-1","choices":[{"message":{"content":"hi"}}],"usage":{"total_tokens":3}}'
)


def test_a_json_answer_reaches_the_client_whole_and_in_order_before_the_hand_off() -> None:
    c = call()
    c.provider.head(
        200,
        [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", b"%d" % len(JSON_BODY)),
            (b"Connection", b"keep-alive"),
            (b"x-request-id", b"req_1"),
        ],
    )
    c.provider.body(JSON_BODY[:20], JSON_BODY[20:])
    c.provider.complete()

    # the head first, the body pieces as they came, then (and only then) the hand-off
    assert c.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert c.kinds() == ["write", "finish", "done"]
    assert c.events[-1] == ("done", True)
    response = read_response(c.written)
    assert response.complete and response.status == 200
    assert response.body == JSON_BODY
    assert response.headers[b"content-length"] == b"%d" % len(JSON_BODY)
    assert b"transfer-encoding" not in response.headers
    assert b"connection" not in response.headers  # hop-by-hop: the provider's is not passed on
    assert response.headers[b"x-request-id"] == b"req_1"
    assert response.headers[b"llmtap-id"] == response.headers[b"helicone-id"] == REQUEST_ID.encode()

    # what the sink got: status, the whole body, timings in causal order, no error
    assert c.exchange.finished and c.exchange.conn is None
    captured = c.record
    record = captured.record
    assert (record.status, record.error, record.request_id) == (200, None, REQUEST_ID)
    assert captured.response_body == JSON_BODY
    assert record.target_url == "https://api.example.com/v1/chat/completions"
    timing = record.timing
    assert timing.upstream_headers_ms is not None and timing.first_chunk_ms is not None
    assert 0 <= timing.upstream_headers_ms <= timing.first_chunk_ms <= timing.total_ms
    assert ("abort", None) not in c.events


def test_a_whole_answer_goes_to_the_client_in_one_write_and_a_streams_head_at_once() -> None:
    # one write is one send: the head of a whole (non-streamed) answer waits for its body
    c = call()
    c.provider.head(
        200,
        [(b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(JSON_BODY))],
    )
    assert c.kinds() == []
    c.provider.body(JSON_BODY)
    c.provider.complete()
    writes = [data for kind, data in c.events if kind == "write"]
    assert len(writes) == 1
    assert read_response(writes[0]).body == JSON_BODY

    # an empty body: the head goes out at the end
    empty = call()
    empty.provider.head(200, [(b"Content-Length", b"0")])
    empty.provider.complete()
    assert empty.kinds() == ["write", "finish", "done"]
    assert read_response(empty.written).complete

    # a stream's head is not held: the client sees it before the first event
    stream = call()
    stream.provider.head(200, [(b"Content-Type", b"text/event-stream")], chunked=True)
    assert stream.kinds() == ["write"]


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(b"data: " + msgspec.json.encode(chunk) + b"\n\n" for chunk in chunks)


def test_a_streamed_answer_reaches_the_client_without_the_usage_llmtap_asked_for() -> None:
    c = call(usage_filter=True)
    choice = {"index": 0, "delta": {"content": "hi"}}
    stream = (
        sse(
            {"id": "c1", "choices": [choice], "usage": None},
            {"id": "c1", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}},
        )
        + b"data: [DONE]\n\n"
    )
    # framed by length upstream: the client's copy is shorter, so it must go chunked
    c.provider.head(
        200, [(b"content-type", b"text/event-stream"), (b"content-length", b"%d" % len(stream))]
    )
    c.provider.body(stream[:9], stream[9:70], stream[70:])  # events split across reads
    c.provider.complete()

    response = read_response(c.written)
    assert response.complete
    assert response.headers[b"transfer-encoding"] == b"chunked"
    assert b"content-length" not in response.headers
    assert response.body == sse({"id": "c1", "choices": [choice]}) + b"data: [DONE]\n\n"
    assert c.kinds() == ["write", "finish", "done"]
    # the log keeps the provider's own bytes, usage included
    captured = c.record
    assert captured.response_body == stream
    assert captured.record.usage_injected and captured.record.streamed


def test_a_filtered_stream_ending_mid_event_still_gives_the_client_its_last_bytes() -> None:
    c = call(usage_filter=True)
    c.provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    c.provider.body(b"data: 1\n\ndata: [DO", b"NE]")  # no blank line after the last event
    c.provider.complete()
    response = read_response(c.written)
    assert response.complete and response.body == b"data: 1\n\ndata: [DONE]"


@pytest.mark.parametrize(
    ("upstream_chunked", "length", "client_framing"),
    [
        (False, b"11", b"content-length"),  # a length passes through as it came
        (True, None, b"transfer-encoding"),  # chunked is re-chunked by us, piece by piece
        (False, None, b"transfer-encoding"),  # read until close upstream: chunked to the client
    ],
)
def test_the_client_gets_a_framing_it_can_read_whatever_the_provider_used(
    upstream_chunked: bool, length: bytes | None, client_framing: bytes
) -> None:
    c = call()
    headers: HeaderList = [(b"content-type", b"text/plain")]
    if length is not None:
        headers.append((b"content-length", length))
    if upstream_chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    c.provider.head(200, headers, chunked=upstream_chunked)
    c.provider.body(b"hello ", b"world")
    c.provider.complete()
    response = read_response(c.written)
    assert response.complete and response.body == b"hello world"
    assert client_framing in response.headers
    assert len([k for k in (b"content-length", b"transfer-encoding") if k in response.headers]) == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_failure_before_the_head_answers_in_the_providers_error_shape(provider: str) -> None:
    c = call(provider=provider)
    c.provider.fail(502, "upstream_connect_error", "could not connect to https://api.example.com")

    response = read_response(c.written)
    assert response.complete and response.status == 502
    assert response.headers[b"llmtap-error"] == b"upstream_connect_error"
    assert response.headers[b"llmtap-id"] == REQUEST_ID.encode()
    error = msgspec.json.decode(response.body)
    if provider == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
    else:
        assert error["error"]["code"] == "upstream_connect_error"
    assert c.kinds() == ["write", "finish", "done"]
    assert c.events[-1] == ("done", True)  # an answer like any other: the connection stays
    record = c.record.record
    assert (record.status, record.error) == (502, "upstream_connect_error")
    assert c.record.response_body == response.body


def test_a_failure_after_the_head_cuts_the_response_and_closes_the_connection() -> None:
    c = call()
    c.provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    c.provider.body(b"data: 1\n\n")
    written_before = c.written
    c.provider.fail(502, "upstream_disconnected", "the provider closed the connection early")

    # nothing more reaches the client: no error body, no last chunk that would end it cleanly
    assert c.written == written_before
    assert not read_response(c.written).complete
    assert c.events[-2:] == [("finish", None), ("done", False)]
    record = c.record.record
    assert (record.status, record.error) == (200, "upstream_disconnected")
    assert c.record.response_body == b"data: 1\n\n"


def test_a_client_gone_mid_stream_stops_the_provider_call_and_is_logged_as_such() -> None:
    c = call()
    provider = c.provider
    provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    provider.body(b"data: 1\n\n")
    c.exchange.client_gone()

    assert c.kinds() == ["write", "abort", "finish", "done"]
    assert c.events[-1] == ("done", False)
    assert provider.exchange is None and c.exchange.conn is None
    record = c.record.record
    assert (record.status, record.error) == (200, "client_disconnected")
    # a timeout or a late failure after that is no second answer and no second record
    c.exchange.fail(504, "upstream_idle_timeout", "the provider sent nothing for 1s")
    c.exchange.client_gone()
    assert len(c.app.handed_off) == 1 and c.events[-1] == ("done", False)


def test_a_client_gone_before_any_answer_is_logged_without_a_status() -> None:
    c = call()
    c.exchange.client_gone()
    assert c.kinds() == ["abort", "finish", "done"]
    assert (c.record.record.status, c.record.record.error) == (0, "client_disconnected")


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_an_answer_without_a_body_ends_at_its_head(
    method: bytes, status: int, chunked: bool
) -> None:
    c = call(method)
    framing = (b"transfer-encoding", b"chunked") if chunked else (b"content-length", b"123")
    c.provider.head(status, [(b"content-type", b"application/json"), framing], chunked=chunked)
    c.provider.complete()  # as UpstreamConnection does at the head of a HEAD answer

    head = c.written
    assert head.endswith(b"\r\n\r\n") and head.count(b"\r\n\r\n") == 1  # the head, nothing after
    # the length a GET would have had, as the provider said it; never a framing of our own
    assert (b"content-length: 123\r\n" in head) is not chunked
    assert b"transfer-encoding" not in head
    assert c.kinds() == ["write", "finish", "done"] and c.events[-1] == ("done", True)


@pytest.mark.parametrize(
    ("client_closes", "draining", "says_close", "keep_alive"),
    [
        (False, False, False, True),
        (True, False, True, False),  # the client asked (Connection: close, HTTP/1.0)
        (False, True, True, True),  # shutting down: the client connection closes it after
    ],
)
def test_the_answer_says_whether_the_connection_stays(
    client_closes: bool, draining: bool, says_close: bool, keep_alive: bool
) -> None:
    c = call(client_closes=client_closes, draining=draining)
    c.provider.head(200, [(b"content-length", b"2")])
    c.provider.body(b"{}")
    c.provider.complete()
    assert (read_response(c.written).headers.get(b"connection") == b"close") is says_close
    assert c.events[-1] == ("done", keep_alive)


def test_the_client_gets_every_byte_and_the_log_keeps_the_capture_limit() -> None:
    c = call(max_capture=10)
    c.provider.head(200, [(b"content-length", b"24")])
    c.provider.body(b"0123456", b"789abcdefghijklmn")
    c.provider.complete()
    assert read_response(c.written).body == b"0123456789abcdefghijklmn"
    assert c.exchange.resp_parts == [b"0123456", b"789"] and c.exchange.resp_truncated
    assert c.exchange.resp_size == 24


# -- a client leaving at the stream's final event, before the provider's body ended -----------

OPENAI_STREAM = (
    sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
    + sse({"id": "c1", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}})
    + b"data: [DONE]\n\n"
)
FINAL_EVENT_STREAMS = {
    "openai [DONE]": OPENAI_STREAM,
    "openai [DONE] crlf": OPENAI_STREAM.replace(b"\n", b"\r\n"),
    "anthropic message_stop": (
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":3}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    ),
    "responses response.completed": (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n'
        b"event: response.completed\ndata: "
        + msgspec.json.encode(
            {"type": "response.completed", "response": {"output": "x" * 10_000, "usage": {}}}
        )
        + b"\n\n"
    ),
    "data type only": b'data: {"type":"message_stop"}\n\n',
}


@pytest.mark.parametrize("name", sorted(FINAL_EVENT_STREAMS))
@pytest.mark.parametrize("pieces", [1, 7], ids=["one read", "seven reads"])
def test_a_client_gone_after_the_final_event_is_complete_and_the_provider_drains(
    name: str, pieces: int
) -> None:
    stream = FINAL_EVENT_STREAMS[name]
    c = call()
    c.provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    step = -(-len(stream) // pieces)
    c.provider.body(*(stream[i : i + step] for i in range(0, len(stream), step)))
    provider = c.provider
    c.exchange.client_gone()  # the terminator has not come yet

    # the provider connection reads the rest alone; the exchange is done with it
    assert c.kinds() == ["write", "drain", "finish", "done"]
    assert ("abort", None) not in c.events
    assert provider.exchange is None and c.exchange.conn is None
    record = c.record.record
    assert (record.status, record.error) == (200, None)
    assert c.record.response_body == stream


@pytest.mark.parametrize(
    "tail",
    [
        b"data: [DONE]",  # its blank line did not come: the client cannot have read it
        b"data: [DONE]\n",
        b'event: message_delta\ndata: {"type":"message_delta"}\n\n',
        b'event: content_block_stop\ndata: {"type":"message_stop"}\n\n',  # the event: line rules
        b'data: {"type":"message_stop_soon"}\n\n',
        b": data: [DONE]\n\n",  # a comment
        b"data: [DONE]\n\ndata: late\n\n",  # something after the end: not the end
    ],
)
def test_a_client_gone_before_the_final_event_is_still_a_disconnect(tail: bytes) -> None:
    c = call()
    c.provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    c.provider.body(b'data: {"choices":[]}\n\n', tail)
    c.exchange.client_gone()
    assert c.kinds() == ["write", "abort", "finish", "done"]
    assert c.record.record.error == "client_disconnected"


def test_a_client_that_stopped_reading_is_a_disconnect_even_after_the_final_event() -> None:
    c = call()
    c.provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    c.client.writing_paused = True  # the proxy's buffer to it is full: it did not read [DONE]
    c.provider.body(OPENAI_STREAM)
    c.exchange.client_gone()
    assert c.kinds() == ["write", "abort", "finish", "done"]
    assert c.record.record.error == "client_disconnected"


def test_a_filtered_stream_the_client_left_at_done_is_complete() -> None:
    c = call(usage_filter=True)
    c.provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    c.provider.body(OPENAI_STREAM)
    assert read_response(c.written).body.endswith(b"data: [DONE]\n\n")  # relayed whole
    c.exchange.client_gone()
    assert c.kinds() == ["write", "drain", "finish", "done"]
    assert c.record.record.error is None


def test_past_the_capture_limit_the_last_piece_relayed_still_tells() -> None:
    c = call(max_capture=16)
    c.provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    c.provider.body(b"data: " + b"x" * 100 + b"\n\n", b"data: [DONE]\n\n")
    assert c.exchange.resp_truncated
    c.exchange.client_gone()
    assert c.kinds() == ["write", "drain", "finish", "done"]
    assert c.record.record.error is None


def test_a_client_gone_after_a_json_answer_was_cut_is_a_disconnect() -> None:
    c = call()
    c.provider.head(200, [(b"content-length", b"%d" % len(JSON_BODY))])
    c.provider.body(JSON_BODY[:10])
    c.exchange.client_gone()
    assert c.record.record.error == "client_disconnected"
    assert ("abort", None) in c.events


def test_a_final_event_longer_than_the_look_back_stays_a_disconnect() -> None:
    """A last event past ``MAX_TAIL_BYTES`` is not recognised: the old behaviour, never a wrong
    'complete'."""
    c = call()
    c.provider.head(200, [(b"content-type", b"text/event-stream")], chunked=True)
    huge = b'{"type":"response.completed","response":{"output":"' + b"x" * (MAX_TAIL_BYTES + 1)
    c.provider.body(
        b"event: response.completed\n", b"data: " + huge[:4096], huge[4096:], b'"}}\n\n'
    )
    c.exchange.client_gone()
    assert c.record.record.error == "client_disconnected"
    assert ("abort", None) in c.events
