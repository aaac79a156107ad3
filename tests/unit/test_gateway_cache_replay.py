"""A cache hit's replay (``cache_replay``): a whole JSON answer goes out in one write from the
head prepared when the memory learnt it, and the client and the log get exactly what the
piecewise path (``on_response_head/body/complete``, as a relayed answer) gives them.

The reference below is that piecewise path with the headers a hit always had; every case runs
both on a real ``Exchange`` with fake client and app (as in ``test_proxy_exchange.py``) and
compares the bytes written and the record built at the hand-off.
"""

from __future__ import annotations

import gzip
import time
from typing import Any

import msgspec
import pytest

from llmtap.capture.tap import HeaderList, TapHeaders
from llmtap.proxy.capture import Captured, build_record
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.gateway.cache_relay import cache_headers
from llmtap.proxy.gateway.cache_replay import Prepared, replay
from llmtap.proxy.gateway.cache_store import CachedResponse
from llmtap.proxy.routing import Upstream
from llmtap.proxy.stream_usage import UsageChunkFilter

REQUEST_ID = "0b9b7c1e-5f0c-4d2a-8e57-3b2f6d1e0c88"
JSON = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
SSE = b'data: {"choices":[]}\n\ndata: [DONE]\n\n'
STORED: HeaderList = [
    (b"Content-Type", b"application/json"),
    (b"x-request-id", b"req_1"),
    (b"openai-processing-ms", b"12"),
]

SECRET_GZIP: HeaderList = [
    (b"Content-Type", b"application/json"),
    (b"Content-Encoding", b"gzip"),
    (b"X-Upstream-Token", b"tok-1"),
]


class Client:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.writing_paused = False
        self.kept: bool | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def cork(self) -> None:
        pass

    def uncork(self) -> None:
        pass

    def exchange_done(self, keep_alive: bool) -> None:
        self.kept = keep_alive


class App:
    def __init__(self, draining: bool, max_capture: int) -> None:
        self.draining = draining
        self.max_capture = max_capture
        self.records: list[Captured] = []

    def finish(self, exchange: Exchange) -> None:
        self.records.append(build_record(exchange, None, max_decoded_bytes=1 << 20))


def _exchange(
    method: bytes, client_closes: bool, draining: bool, extra_head: bytes, max_capture: int
) -> tuple[Exchange, Client, App]:
    client, app = Client(), App(draining, max_capture)
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
    exchange.upstream = Upstream("openai", "https", "api.example.com", 443, "", False)
    exchange.upstream_path = b"/v1/chat/completions"
    exchange.extra_head = extra_head
    exchange.cache = "hit"
    return exchange, client, app


def _piecewise(exchange: Exchange, answer: CachedResponse, idx: int) -> None:
    """How a hit was replayed before the prepared head: the reference."""
    headers = list(answer.headers)
    if not answer.chunked and answer.status not in (204, 304) and exchange.method != b"HEAD":
        headers.append((b"content-length", b"%d" % len(answer.body)))
    headers.extend(cache_headers(b"HIT", idx))
    exchange.on_response_head(answer.status, answer.reason, headers, answer.chunked)
    if answer.body:
        exchange.on_response_body(answer.body)
    exchange.on_response_complete()


def _logged(app: App) -> dict[str, Any]:
    (captured,) = app.records
    record = msgspec.structs.asdict(captured.record)
    record.pop("timing")
    return {"record": record, "response_body": captured.response_body}


CASES = {
    "json": dict(answer=CachedResponse(200, b"OK", STORED, False, JSON)),
    "json, other status": dict(answer=CachedResponse(201, b"Created", STORED, False, JSON)),
    "empty body": dict(answer=CachedResponse(200, b"OK", STORED, False, b"")),
    "bucket slot 7": dict(answer=CachedResponse(200, b"OK", STORED, False, JSON), idx=7),
    "rate-limit head": dict(
        answer=CachedResponse(200, b"OK", STORED, False, JSON),
        extra_head=b"helicone-ratelimit-limit: 5\r\nhelicone-ratelimit-remaining: 4\r\n",
    ),
    "client closes": dict(
        answer=CachedResponse(200, b"OK", STORED, False, JSON), client_closes=True
    ),
    "draining": dict(answer=CachedResponse(200, b"OK", STORED, False, JSON), draining=True),
    "secret and compressed head": dict(
        answer=CachedResponse(200, b"OK", SECRET_GZIP, False, gzip.compress(JSON))
    ),
}
PIECEWISE = {
    "stream": dict(
        answer=CachedResponse(200, b"OK", [(b"content-type", b"text/event-stream")], True, SSE)
    ),
    "stream, usage filtered": dict(
        answer=CachedResponse(200, b"OK", [(b"content-type", b"text/event-stream")], True, SSE),
        usage_filter=True,
    ),
    "json, usage filter set": dict(
        answer=CachedResponse(200, b"OK", STORED, False, JSON), usage_filter=True
    ),
    "HEAD": dict(answer=CachedResponse(200, b"OK", STORED, False, JSON), method=b"HEAD"),
    "no content": dict(answer=CachedResponse(204, b"No Content", STORED, False, b"")),
    "over the capture": dict(
        answer=CachedResponse(200, b"OK", STORED, False, JSON), max_capture=10
    ),
}


def _both(
    answer: CachedResponse,
    idx: int = 0,
    method: bytes = b"POST",
    client_closes: bool = False,
    draining: bool = False,
    extra_head: bytes = b"",
    max_capture: int = 1 << 20,
    usage_filter: bool = False,
) -> tuple[tuple[Client, App], tuple[Client, App]]:
    prepared = Prepared(answer, idx)
    results = []
    for run in (lambda e: replay(e, prepared), lambda e: _piecewise(e, answer, idx)):
        exchange, client, app = _exchange(method, client_closes, draining, extra_head, max_capture)
        if usage_filter:
            exchange.usage_filter = UsageChunkFilter()
        run(exchange)
        assert exchange.finished and exchange.head_sent and exchange.conn is None
        results.append((client, app))
    return results[0], results[1]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_whole_answer_is_one_write_of_the_bytes_and_record_the_piecewise_path_gives(
    case: str,
) -> None:
    (fast, fast_app), (ref, ref_app) = _both(**CASES[case])  # type: ignore[arg-type]
    assert len(fast.writes) == 1
    assert fast.writes[0] == b"".join(ref.writes)
    assert fast.kept == ref.kept
    assert _logged(fast_app) == _logged(ref_app)


@pytest.mark.parametrize("case", list(PIECEWISE), ids=list(PIECEWISE))
def test_what_one_write_cannot_serve_is_replayed_piecewise_with_the_same_result(case: str) -> None:
    (fast, fast_app), (ref, ref_app) = _both(**PIECEWISE[case])  # type: ignore[arg-type]
    assert b"".join(fast.writes) == b"".join(ref.writes)
    assert fast.kept == ref.kept
    assert _logged(fast_app) == _logged(ref_app)


def test_the_prepared_head_says_hit_and_the_slot() -> None:
    prepared = Prepared(CachedResponse(200, b"OK", STORED, False, JSON), 3)
    assert prepared.head_lines is not None
    assert b"helicone-cache: HIT\r\n" in prepared.head_lines
    assert b"helicone-cache-bucket-idx: 3\r\n" in prepared.head_lines
    # framing is the exchange's to write: the length is in the logged headers, not the lines
    assert b"content-length" not in prepared.head_lines.lower()
    assert (b"content-length", b"%d" % len(JSON)) in prepared.headers
    streamed = Prepared(CachedResponse(200, b"OK", [], True, SSE), 0)
    assert streamed.head_lines is None


def test_hits_on_one_slot_share_its_logged_head() -> None:
    """The shipper does not redact a hit's headers again for every call: the records of hits on
    one slot share the head read once (redacted, its content type and encoding) and log what
    reading each hit's headers gives."""
    prepared = Prepared(CachedResponse(200, b"OK", SECRET_GZIP, False, gzip.compress(JSON)), 2)
    records = []
    for _ in range(2):
        exchange, _, app = _exchange(b"POST", False, False, b"", 1 << 20)
        replay(exchange, prepared)
        (captured,) = app.records
        records.append(captured)
        assert exchange.resp_logged is prepared.logged
    first, second = (c.record for c in records)
    assert first.response_headers is second.response_headers is prepared.logged.headers
    assert first.response_headers["x-upstream-token"].startswith("<redacted:")
    assert first.extra["response_decoded_from"] == "gzip"
    assert records[0].response_body == JSON
