"""The ingestion routes of the real API app (uvicorn, real records store, SQLite queue, file
bodies): what a client sees for good and bad input, auth, size limits and a refusing queue, and
that an acknowledged log is already in the queue when the answer arrives."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from llmtap.queue.factory import open_consumer
from llmtap.queue.port import Message
from llmtap.record import LogRecord, decode
from llmtap.stores.bodies.port import body_key
from support.api_backend import ApiBackend

LIMIT = 64 * 1024


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiBackend]:
    monkeypatch.setenv("LLMTAP_MAX_INGEST_BODY_BYTES", str(LIMIT))
    # a short busy timeout: a locked queue refuses quickly instead of holding the caller
    queue = tmp_path / "data" / "queue.db"
    monkeypatch.setenv("LLMTAP_QUEUE_URL", f"sqlite:///{queue}?busy_timeout_ms=200")
    with ApiBackend(tmp_path / "data", analytics=False) as api:
        yield api


@pytest.fixture
def key(backend: ApiBackend) -> str:
    return backend.new_org_key("acme")[1]


@pytest.fixture
def client(backend: ApiBackend) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=backend.url, timeout=30.0) as c:
        yield c


def queued(backend: ApiBackend) -> list[LogRecord]:
    """Every record in the queue now (one poll: an acknowledged log must already be there)."""
    consumer = open_consumer(backend.settings, group="ingest-test")
    try:
        messages: list[Message] = consumer.poll_batch(1000, 0.5)
    finally:
        consumer.close()
    return [decode(m.value) for m in messages]


def async_log(**response: Any) -> dict[str, Any]:
    return {
        "providerRequest": {
            "url": "https://api.openai.com/v1/chat/completions",
            "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            "meta": {"Helicone-User-Id": "alice", "Helicone-Property-Team": "search"},
        },
        "providerResponse": {
            "json": {"object": "chat.completion", "model": "gpt-4o-mini", "choices": []},
            "status": 200,
            "headers": {},
            **response,
        },
        "timing": {
            "startTime": {"seconds": 1_764_000_000, "milliseconds": 0},
            "endTime": {"seconds": 1_764_000_001, "milliseconds": 0},
        },
    }


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("kind", ["custom", "oai", "anthropic"])
def test_an_async_log_is_in_the_queue_when_acknowledged(
    backend: ApiBackend, client: httpx.Client, key: str, kind: str
) -> None:
    response = client.post(f"/{kind}/v1/log", json=async_log(), headers=auth(key))
    assert response.status_code == 200, response.text
    request_id = response.json()["id"]
    assert response.headers["helicone-id"] == request_id
    (record,) = queued(backend)
    assert record.request_id == request_id
    assert record.source == "async-log"
    assert (record.user_id, record.properties) == ("alice", {"team": "search"})
    assert record.request_body is not None and record.request_body.key is not None
    stored = backend.bodies.get(record.request_body.key)
    assert json.loads(stored)["model"] == "gpt-4o-mini"
    assert record.request_body.key == body_key(record.org_id, request_id, "request")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk-llmtap-nobody"}, {"Helicone-Auth": "Bearer nope"}],
    ids=["missing", "unknown", "unknown-helicone-auth"],
)
@pytest.mark.parametrize("path", ["/oai/v1/log", "/v1/traces"])
def test_without_a_valid_key_nothing_is_logged(
    backend: ApiBackend, client: httpx.Client, headers: dict[str, str], path: str
) -> None:
    response = client.post(path, json=async_log(), headers=headers)
    assert response.status_code == 401
    assert "key" in response.json()["error"]["message"]
    assert queued(backend) == []


def test_a_revoked_key_is_refused(backend: ApiBackend, client: httpx.Client) -> None:
    org = backend.records.create_org("gone")
    key_id, key = backend.records.create_key(org, "old")
    backend.records.revoke_key(key_id)
    response = client.post("/oai/v1/log", json=async_log(), headers=auth(key))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not JSON"),
        (b'{"providerRequest": {"json": {}}}', "missing required field `providerResponse`"),
        (
            json.dumps(async_log(status="ok")).encode(),
            "Expected `int`, got `str` - at `$.providerResponse.status`",
        ),
        (
            json.dumps({**async_log(), "timing": {"startTime": "yesterday"}}).encode(),
            "at `$.timing.startTime`",
        ),
    ],
    ids=["not-json", "missing-field", "wrong-type", "bad-timing"],
)
def test_a_malformed_log_gets_a_400_naming_the_problem(
    backend: ApiBackend, client: httpx.Client, key: str, body: bytes, problem: str
) -> None:
    response = client.post(
        "/oai/v1/log", content=body, headers={**auth(key), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]
    assert queued(backend) == []


def test_bodies_over_the_limit_get_413(backend: ApiBackend, client: httpx.Client, key: str) -> None:
    big = async_log()
    big["providerRequest"]["json"]["messages"][0]["content"] = "x" * LIMIT
    data = json.dumps(big).encode()
    sized = client.post("/oai/v1/log", content=data, headers=auth(key))
    assert sized.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    streamed = client.post("/oai/v1/log", content=chunks(), headers=auth(key))
    assert streamed.status_code == 413
    bomb = gzip.compress(b'{"providerRequest": "' + b" " * (LIMIT * 20) + b'"}')
    assert len(bomb) < LIMIT
    inflated = client.post(
        "/v1/traces",
        content=bomb,
        headers={**auth(key), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert inflated.status_code == 413
    assert queued(backend) == []


def test_a_gzipped_log_is_read(backend: ApiBackend, client: httpx.Client, key: str) -> None:
    body = gzip.compress(json.dumps(async_log()).encode())
    response = client.post(
        "/oai/v1/log",
        content=body,
        headers={**auth(key), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert [r.request_id for r in queued(backend)] == [response.json()["id"]]


def test_a_queue_that_refuses_gives_503_and_the_retry_is_logged(
    backend: ApiBackend, client: httpx.Client, key: str
) -> None:
    queue_path = backend.settings.queue_url.removeprefix("sqlite:///").split("?")[0]
    holder = sqlite3.connect(queue_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the queue
    try:
        refused = client.post("/oai/v1/log", json=async_log(), headers=auth(key))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert refused.status_code == 503
    assert "retry" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"]
    assert queued(backend) == []
    accepted = client.post("/oai/v1/log", json=async_log(), headers=auth(key))
    assert accepted.status_code == 200
    assert [r.request_id for r in queued(backend)] == [accepted.json()["id"]]


def _attr(key: str, value: str | int) -> KeyValue:
    any_value = (
        AnyValue(string_value=value) if isinstance(value, str) else AnyValue(int_value=value)
    )
    return KeyValue(key=key, value=any_value)


def export(*spans: dict[str, str | int]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i, attrs in enumerate(spans, start=1):
        span = scope.spans.add()
        span.trace_id = bytes(range(1, 17))
        span.span_id = bytes([i] * 8)
        span.name = "span"
        span.start_time_unix_nano = 1_764_000_000_000_000_000
        span.end_time_unix_nano = 1_764_000_000_500_000_000
        span.attributes.extend(_attr(k, v) for k, v in attrs.items())
    return request


LLM_SPAN = {
    "gen_ai.provider.name": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 10,
    "gen_ai.usage.output_tokens": 5,
}
TASK_SPAN = {"traceloop.span.kind": "task", "traceloop.entity.name": "plan"}


def test_otlp_protobuf_logs_llm_spans_and_counts_the_rest(
    backend: ApiBackend, client: httpx.Client, key: str
) -> None:
    body = export(LLM_SPAN, TASK_SPAN).SerializeToString()
    response = client.post(
        "/v1/traces",
        content=body,
        headers={**auth(key), "Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 0
    assert "1 span(s) are not LLM calls" in answer.partial_success.error_message
    assert (response.headers["llmtap-spans-logged"], response.headers["llmtap-spans-ignored"]) == (
        "1",
        "1",
    )
    (record,) = queued(backend)
    assert record.source == "otel"
    assert (record.trace_id, record.span_id) == (bytes(range(1, 17)).hex(), "01" * 8)
    assert (record.extra["usage.input_tokens"], record.extra["usage.output_tokens"]) == ("10", "5")


def test_otlp_json_is_accepted(backend: ApiBackend, client: httpx.Client, key: str) -> None:
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "openai.chat",
                                "startTimeUnixNano": "1764000000000000000",
                                "endTimeUnixNano": "1764000000250000000",
                                "attributes": [
                                    {"key": k, "value": {"stringValue": v}}
                                    if isinstance(v, str)
                                    else {"key": k, "value": {"intValue": str(v)}}
                                    for k, v in LLM_SPAN.items()
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    response = client.post("/v1/traces", json=doc, headers=auth(key))
    assert response.status_code == 200
    assert response.json() == {}
    (record,) = queued(backend)
    assert (record.trace_id, record.span_id) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
    )
    assert record.timing.total_ms == 250


@pytest.mark.parametrize(
    ("content_type", "body", "status", "problem"),
    [
        ("application/x-protobuf", b"\xff\xfe\xfd not a protobuf", 400, "invalid protobuf"),
        ("application/json", b'{"resourceSpans": "x"}', 400, "invalid OTLP export"),
        ("text/plain", b"hello", 415, "application/x-protobuf"),
    ],
    ids=["bad-protobuf", "bad-json", "wrong-media-type"],
)
def test_otlp_bad_input_is_refused(
    backend: ApiBackend,
    client: httpx.Client,
    key: str,
    content_type: str,
    body: bytes,
    status: int,
    problem: str,
) -> None:
    response = client.post(
        "/v1/traces", content=body, headers={**auth(key), "Content-Type": content_type}
    )
    assert response.status_code == status
    assert problem in response.json()["error"]["message"]
    assert queued(backend) == []
