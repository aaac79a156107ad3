"""Pack windows read without botocore's ``get_object`` (``stores.bodies.s3_range``), against an S3
endpoint written here that answers badly on purpose: a body cut short, error answers, and the
egress proxy the S3 client is told to use. Whatever the lean read meets, the store answers what
botocore's path answers: the exact bytes, ``KeyError`` or ``StoreUnavailable``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmtap.errors import StoreUnavailable
from llmtap.stores.bodies.port import pack_bodies, pack_key
from llmtap.stores.bodies.s3 import S3BodyStore

BODIES = [os.urandom(n) for n in (10, 2_000, 35_000, 7)]
PACK = pack_key("org", "ab" * 16)
BLOB, KEYS = pack_bodies(PACK, BODIES)

Answer = Callable[[BaseHTTPRequestHandler], None]


def ranged(handler: BaseHTTPRequestHandler, *, cut: bool = False) -> None:
    start, _, end = handler.headers["Range"].removeprefix("bytes=").partition("-")
    data = BLOB[int(start) : int(end) + 1]
    handler.send_response(206)
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("Content-Range", f"bytes {start}-{int(start) + len(data) - 1}/{len(BLOB)}")
    handler.end_headers()
    handler.wfile.write(data[: len(data) // 2] if cut else data)
    if cut:
        handler.close_connection = True


def error(status: int, code: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        body = f"<Error><Code>{code}</Code><Message>no</Message></Error>".encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


class FakeS3:
    """Answers GETs in turn from ``answers`` (the last one repeats), recording each request."""

    def __init__(self) -> None:
        self.answers: list[Answer] = [ranged]
        self.requests: list[tuple[str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.requests.append((self.path, dict(self.headers)))
                answer = fake.answers.pop(0) if len(fake.answers) > 1 else fake.answers[0]
                answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeS3]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "llmtap-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "llmtap-test-secret")
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeS3()
    yield fake
    fake.close()


def open_store(endpoint: str) -> S3BodyStore:
    return S3BodyStore("bucket", endpoint=endpoint, region="us-east-1", create_bucket=False)


def test_a_window_is_one_signed_ranged_get(fake_s3: FakeS3) -> None:
    store = open_store(f"http://127.0.0.1:{fake_s3.port}")
    try:
        assert [store.get(key) for key in KEYS] == BODIES
    finally:
        store.close()
    assert len(fake_s3.requests) == 1
    path, headers = fake_s3.requests[0]
    assert path == "/bucket/org/packs/ab/" + "ab" * 16 + ".pack"
    assert headers["Range"] == f"bytes=0-{1024 * 1024 - 1}"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=llmtap-test/")


def test_a_window_cut_short_is_read_again_not_served_short(fake_s3: FakeS3) -> None:
    fake_s3.answers = [lambda handler: ranged(handler, cut=True), ranged]
    store = open_store(f"http://127.0.0.1:{fake_s3.port}")
    try:
        assert store.get(KEYS[2]) == BODIES[2]
    finally:
        store.close()
    assert len(fake_s3.requests) == 2


def test_a_missing_pack_is_key_error(fake_s3: FakeS3) -> None:
    fake_s3.answers = [error(404, "NoSuchKey")]
    store = open_store(f"http://127.0.0.1:{fake_s3.port}")
    try:
        with pytest.raises(KeyError):
            store.get(KEYS[1])
    finally:
        store.close()


def test_an_overloaded_server_is_unavailable_after_botocore_s_retries(fake_s3: FakeS3) -> None:
    fake_s3.answers = [error(503, "SlowDown")]
    store = open_store(f"http://127.0.0.1:{fake_s3.port}")
    try:
        with pytest.raises(StoreUnavailable):
            store.get(KEYS[1])
    finally:
        store.close()
    # the lean read, then botocore's attempts (its retries, as before)
    assert len(fake_s3.requests) > 2


def test_window_reads_go_through_the_egress_proxy_the_client_uses(
    fake_s3: FakeS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{fake_s3.port}")
    store = open_store("http://s3.invalid:9000")  # only the proxy can reach it
    calls: list[object] = []
    store._client.meta.events.register(
        "provide-client-params.s3.GetObject", lambda **kwargs: calls.append(kwargs)
    )
    try:
        assert store.get(KEYS[3]) == BODIES[3]
    finally:
        store.close()
    assert calls == []
    assert [path for path, _ in fake_s3.requests] == [
        "http://s3.invalid:9000/bucket/org/packs/ab/" + "ab" * 16 + ".pack"
    ]
