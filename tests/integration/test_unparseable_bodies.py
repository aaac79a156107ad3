"""A body llmtap cannot parse is still an answered call: its row is stored (status, timings,
sizes, the raw body) with the failure noted in ``llmtap-request-parse-error`` /
``llmtap-response-parse-error``; only a queue record that cannot be decoded at all is
dead-lettered.

The provider is a raw HTTP server written here, answering each call with the bytes its
``x-answer`` header names; everything else is ``llmtap serve`` as users run it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.consumer.dlq import decode_dead_letter
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.settings import Settings
from llmtap.stores.factory import open_body_store, open_records_store
from llmtap.stores.records.store import RecordsStore
from support.gateway import GatewayProcess
from support.probes import wait_for

REQUEST_NOTE = "llmtap-request-parse-error"
RESPONSE_NOTE = "llmtap-response-parse-error"
DEPTH = 100_000

GOOD_JSON = (
    b'{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
)
ANSWERS: dict[str, tuple[bytes, bytes]] = {
    "good": (b"application/json", GOOD_JSON),
    "invalid-utf8": (b"application/json", GOOD_JSON.replace(b'"hi"', b'"h\xff\xfei"')),
    "deep": (b"application/json", b"[" * DEPTH + b"]" * DEPTH),
    "deep-stream": (b"text/event-stream", b"data: " + b"[" * DEPTH + b"]" * DEPTH + b"\n\n"),
    "truncated": (b"application/json", GOOD_JSON[:40]),
    "list": (b"application/json", b'[{"object": "chat.completion"}]'),
}
GOOD_REQUEST = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'


class _Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        ctype, body = ANSWERS[self.headers.get("x-answer", "good")]
        self.send_response(200)
        self.send_header("content-type", ctype.decode())
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, provider: str) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("unparseable") / "data"
    env = {"LLMTAP_OPENAI_BASE_URL": provider, "LLMTAP_BATCH_MAX_WAIT_S": "0.05"}
    with GatewayProcess(data, env=env) as gw:
        yield gw


@pytest.fixture(scope="module")
def records(gateway: GatewayProcess) -> Iterator[RecordsStore]:
    store = open_records_store(gateway.records_url)
    yield store
    store.close()


def _dead_letters(gateway: GatewayProcess) -> list[Any]:
    settings = Settings(data_dir=gateway.data_dir)
    consumer = open_consumer(settings, group=f"dlq-{uuid.uuid4()}", topics=[settings.dlq_topic])
    try:
        letters: list[Any] = []
        while batch := consumer.poll_batch(1000, 0.5):
            letters.extend(decode_dead_letter(m.value) for m in batch)
        return letters
    finally:
        consumer.close()


CASES = {
    # name: (request body, answer, request note, response note)
    "invalid utf-8 request": (
        GOOD_REQUEST.replace(b"hello", b"he\xff\xfello"),
        "good",
        "invalid_utf8",
        None,
    ),
    "invalid utf-8 response": (GOOD_REQUEST, "invalid-utf8", None, "invalid_utf8"),
    "deep request": (
        b'{"model":"gpt-4o-mini","messages":' + b"[" * DEPTH + b"]" * DEPTH + b"}",
        "good",
        "too_deep",
        None,
    ),
    "deep response": (GOOD_REQUEST, "deep", None, "too_deep"),
    "deep streamed response": (GOOD_REQUEST, "deep-stream", None, "too_deep"),
    "truncated request": (GOOD_REQUEST[:30], "good", "not_json", None),
    "truncated response": (GOOD_REQUEST, "truncated", None, "not_json"),
    "request is a list": (b'[{"model":"gpt-4o-mini"}]', "good", "wrong_shape", None),
    "request is a number": (b"5", "good", "wrong_shape", None),
    "messages is a number": (b'{"model":"gpt-4o-mini","messages":5}', "good", "wrong_shape", None),
    "response is a list": (GOOD_REQUEST, "list", None, "wrong_shape"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_body_that_cannot_be_parsed_is_stored_with_the_failure_noted(
    case: str, gateway: GatewayProcess, records: RecordsStore
) -> None:
    request_body, answer, request_note, response_note = CASES[case]
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=request_body,
        headers={
            "authorization": "Bearer sk-provider",
            "content-type": "application/json",
            "x-answer": answer,
        },
        timeout=30,
    )
    assert response.status_code == 200
    assert response.content == ANSWERS[answer][1]
    request_id = response.headers["helicone-id"]

    row = wait_for(
        lambda: records.get_request(None, request_id), timeout_s=20, what=f"the row of {case}"
    )
    assert row.status == 200 and row.latency_ms > 0
    assert row.request_size == len(request_body)
    assert row.response_size == len(ANSWERS[answer][1])
    assert row.properties.get(REQUEST_NOTE) == request_note
    assert row.properties.get(RESPONSE_NOTE) == response_note
    if response_note is None:
        assert row.input_tokens == 3  # the readable side is still read
    bodies = open_body_store(gateway.bodies_url)
    try:
        assert row.request_body_key is not None
        assert bodies.get(row.request_body_key) == request_body  # the raw bytes, as sent
    finally:
        bodies.close()
    assert not [letter for letter in _dead_letters(gateway) if letter.request_id == request_id]


def test_a_queue_record_that_cannot_be_decoded_still_goes_to_the_dead_letter_topic(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    settings = Settings(data_dir=gateway.data_dir)
    garbage = b'{"request_id": "x", "v": 1, "status": "not a number"}\xff'
    producer = open_producer(settings)
    try:
        producer.publish_batch(settings.topic, [(b"garbage", garbage)])
    finally:
        producer.close()
    letter = wait_for(
        lambda: next((x for x in _dead_letters(gateway) if x.original == garbage), None),
        timeout_s=20,
        what="the dead letter",
    )
    assert letter.stage == "decode" and "not a LogRecord" in letter.error


@pytest.mark.parametrize("depth", [DEPTH, 900, 120])
def test_the_api_shows_a_deeply_nested_body_as_text_not_a_500(
    depth: int, gateway: GatewayProcess, records: RecordsStore
) -> None:
    nested = b"[" * depth + b"]" * depth
    request_body = b'{"model":"gpt-4o-mini","messages":' + nested + b"}"
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=request_body,
        headers={"authorization": "Bearer sk-provider", "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200
    request_id = response.headers["helicone-id"]
    wait_for(lambda: records.get_request(None, request_id), timeout_s=20, what="the row")
    gateway.wait_api()
    key = gateway.first_key()
    assert key is not None
    detail = httpx.get(
        f"{gateway.api_url}/v1/requests/{request_id}",
        params={"bodies": "true"},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert detail.status_code == 200, detail.text[:500]
    shown = detail.json()["bodies"]["request"]
    assert shown["status"] == "stored" and shown["size"] == len(request_body)
    assert shown["text"] == request_body.decode()
    assert shown["json"] is None and "nested deeper than 100" in shown["note"]
    # the readable answer beside it is still shown as JSON
    assert detail.json()["bodies"]["response"]["json"]["object"] == "chat.completion"
