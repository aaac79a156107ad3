"""The provider-independent handlers: row building, authentication, bodies, request parsing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from llmtap.consumer.context import Context
from llmtap.consumer.dlq import (
    DeadLetterDecodeError,
    dead_letter_for,
    decode_dead_letter,
    encode_dead_letter,
)
from llmtap.consumer.handlers.authenticate import Authenticate
from llmtap.consumer.handlers.bodies import BodyMissing, LoadBodies
from llmtap.consumer.handlers.request_parser import RequestParser, endpoint_for
from llmtap.consumer.handlers.row_builder import RowBuilder
from llmtap.errors import StoreUnavailable
from llmtap.keys import hash_key
from llmtap.keys.directory import KeyDirectory
from llmtap.queue.port import Message
from llmtap.record import BodyRef, LogRecord, Timing, encode
from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.factory import open_body_store, open_records_store
from llmtap.stores.records.store import RecordsStore


def make_record(**overrides: object) -> LogRecord:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "source": "proxy",
        "provider": "openai",
        "method": "POST",
        "target_url": "https://api.openai.com/v1/chat/completions",
        "status": 200,
        "timing": Timing(
            start_unix_ms=1_764_000_000_000.0,
            total_ms=812.5,
            upstream_headers_ms=120.0,
            first_chunk_ms=130.0,
        ),
    }
    fields.update(overrides)
    return msgspec.convert(fields, LogRecord, from_attributes=True)


def authenticate(records: RecordsStore) -> Authenticate:
    return Authenticate(KeyDirectory(records.org_for_key_hash, ttl_s=5.0), records.default_org_id)


def make_ctx(record: LogRecord, request_body: bytes | None = None) -> Context:
    message = Message(
        topic="t", partition=0, offset=0, key=None, value=encode(record), timestamp_ms=0
    )
    ctx = Context(message=message, record=record, row=RowBuilder()(record))
    ctx.request_body = request_body
    return ctx


def test_row_builder_copies_what_the_proxy_measured() -> None:
    record = make_record(
        org_id="org-a",
        error="client_disconnected",
        streamed=True,
        user_id="alice",
        session_id="s1",
        session_path="/a/b",
        session_name="chat",
        properties={"env": "prod"},
        request_headers={"content-type": "application/json"},
        response_headers={"x-request-id": "up-1"},
        request_body=BodyRef(key="org-a/re/req-1/request", size=42),
        response_body=BodyRef(size=0, omitted=True),
        trace_id="tr",
        span_id="sp",
    )
    row = RowBuilder()(record)
    assert row.request_id == "req-1"
    assert row.org_id == "org-a"
    assert row.created_unix_ms == 1_764_000_000_000.0
    assert (row.latency_ms, row.ttft_ms, row.upstream_headers_ms) == (812.5, 130.0, 120.0)
    assert row.path == "/v1/chat/completions"
    assert row.status == 200 and row.error == "client_disconnected" and row.streamed
    assert (row.user_id, row.session_id, row.session_path, row.session_name) == (
        "alice",
        "s1",
        "/a/b",
        "chat",
    )
    assert row.properties == {"env": "prod"}
    assert row.response_headers == {"x-request-id": "up-1"}
    assert (row.request_body_key, row.request_size, row.request_omitted) == (
        "org-a/re/req-1/request",
        42,
        False,
    )
    assert (row.response_body_key, row.response_size, row.response_omitted) == (None, 0, True)
    assert (row.trace_id, row.span_id) == ("tr", "sp")
    assert row.usage_source == "unknown" and row.input_tokens is None


def test_row_builder_leaves_org_empty_for_authenticate_and_ttft_unknown() -> None:
    record = make_record(timing=Timing(start_unix_ms=1.0, total_ms=5.0))
    row = RowBuilder()(record)
    assert row.org_id == ""
    assert row.ttft_ms is None and row.upstream_headers_ms is None
    assert row.request_body_key is None and row.request_size == 0


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://api.openai.com/v1/chat/completions", "chat.completions"),
        ("https://x.openai.azure.com/openai/deployments/gpt4/chat/completions", "chat.completions"),
        ("https://api.openai.com/v1/responses", "responses"),
        ("https://api.openai.com/v1/responses/resp_123", "responses"),
        ("https://api.openai.com/v1/embeddings", "embeddings"),
        ("https://api.anthropic.com/v1/messages", "messages"),
        ("https://api.openai.com/v1/models", "models"),
        ("https://api.openai.com/v1/models/gpt-4o-mini", "models"),
        ("https://generativelanguage.googleapis.com/v1beta/models/g:generateContent", "other"),
        ("https://api.openai.com/v1/audio/speech", "other"),
        ("https://api.openai.com/", "other"),
    ],
)
def test_endpoint_from_the_upstream_path(url: str, endpoint: str) -> None:
    ctx = make_ctx(make_record(target_url=url))
    RequestParser()(ctx)
    assert ctx.row.endpoint == endpoint
    assert endpoint_for(ctx.row.path) == endpoint


def test_request_parser_reads_model_and_stream_flag() -> None:
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": []}).encode()
    ctx = make_ctx(make_record(), body)
    RequestParser()(ctx)
    assert ctx.row.model == "gpt-4o-mini"
    assert ctx.row.streamed is True
    assert ctx.request_json["messages"] == []


def test_model_override_wins_over_the_body() -> None:
    body = json.dumps({"model": "gpt-4o-mini"}).encode()
    ctx = make_ctx(make_record(model_override="my-finetune"), body)
    RequestParser()(ctx)
    assert ctx.row.model == "my-finetune"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"model": "gpt-4o', b"", None, b'["a list"]', b'{"model": 7}'],
)
def test_unusable_request_bodies_leave_the_model_unknown(body: bytes | None) -> None:
    ctx = make_ctx(make_record(), body)
    RequestParser()(ctx)
    assert ctx.row.model is None
    assert ctx.row.endpoint == "chat.completions"
    assert ctx.row.streamed is False


def test_dead_letter_round_trips_to_the_original_message() -> None:
    original = Message(
        topic="request-response-logs",
        partition=3,
        offset=17,
        key=b"req-9",
        value=b"\x00\xffnot json",
        timestamp_ms=1234,
        headers={"h": b"\x01"},
    )
    letter = dead_letter_for(
        original,
        ValueError("boom"),
        stage="decode",
        attempts=2,
        first_failure_unix_ms=10,
        last_failure_unix_ms=20,
    )
    value = encode_dead_letter(letter)
    as_json = json.loads(value)
    assert as_json["error_type"] == "ValueError" and as_json["error"] == "boom"
    assert as_json["attempts"] == 2 and as_json["offset"] == 17 and as_json["partition"] == 3
    back = decode_dead_letter(value)
    assert back.original == original.value
    assert back.original_key == b"req-9"
    assert back.original_headers == {"h": b"\x01"}
    assert (back.first_failure_unix_ms, back.last_failure_unix_ms) == (10, 20)


def test_dead_letter_decode_refuses_other_bytes() -> None:
    with pytest.raises(DeadLetterDecodeError):
        decode_dead_letter(b'{"original": 1}')


@pytest.fixture
def records(tmp_path: Path) -> Iterator[RecordsStore]:
    store = open_records_store(f"sqlite:///{tmp_path / 'records.db'}")
    yield store
    store.close()


@pytest.fixture
def bodies(tmp_path: Path) -> Iterator[BodyStore]:
    store = open_body_store(f"file://{tmp_path / 'bodies'}")
    yield store
    store.close()


def test_authenticate_trusts_the_org_the_proxy_resolved(records: RecordsStore) -> None:
    ctx = make_ctx(make_record(org_id="org-from-proxy", auth_key_hash="whatever"))
    authenticate(records)(ctx)
    assert ctx.row.org_id == "org-from-proxy"


def test_authenticate_files_a_keyed_call_under_the_keys_org(records: RecordsStore) -> None:
    org = records.create_org("acme")
    _, key = records.create_key(org, "ci")
    ctx = make_ctx(make_record(auth_key_hash=hash_key(key)))
    authenticate(records)(ctx)
    assert ctx.row.org_id == org


def test_authenticate_puts_keyless_calls_in_the_default_org(records: RecordsStore) -> None:
    ctx = make_ctx(make_record())
    authenticate(records)(ctx)
    assert ctx.row.org_id == records.default_org_id()


def test_authenticate_logs_a_key_nobody_issued_in_the_default_org_flagged(
    records: RecordsStore,
) -> None:
    ctx = make_ctx(make_record(auth_key_hash=hash_key("sk-llmtap-made-up")))
    authenticate(records)(ctx)
    assert ctx.row.org_id == records.default_org_id()
    assert ctx.row.properties["llmtap-auth-error"] == "unknown_key"


def test_load_bodies_reads_both_bodies(bodies: BodyStore) -> None:
    bodies.put("o/re/req-1/request", b'{"model": "m"}')
    bodies.put("o/re/req-1/response", b'{"id": "x"}')
    record = make_record(
        request_body=BodyRef(key="o/re/req-1/request", size=14),
        response_body=BodyRef(key="o/re/req-1/response", size=11),
    )
    ctx = make_ctx(record)
    LoadBodies(bodies)(ctx)
    assert ctx.request_body == b'{"model": "m"}'
    assert ctx.response_body == b'{"id": "x"}'


def test_load_bodies_skips_omitted_and_absent_bodies(bodies: BodyStore) -> None:
    record = make_record(request_body=BodyRef(omitted=True), response_body=None)
    ctx = make_ctx(record)
    LoadBodies(bodies)(ctx)
    assert ctx.request_body is None and ctx.response_body is None


def test_a_missing_body_is_a_retriable_error_not_an_outage(bodies: BodyStore) -> None:
    ctx = make_ctx(make_record(response_body=BodyRef(key="o/re/req-1/response", size=5)))
    with pytest.raises(BodyMissing) as info:
        LoadBodies(bodies)(ctx)
    assert info.value.retriable is True
    assert not isinstance(info.value, StoreUnavailable)


def test_a_body_the_proxy_could_not_store_is_noted_on_the_row(bodies: BodyStore) -> None:
    """The proxy publishes a record without its bodies when the body store refused them
    (``extra.body_error``): the row says so instead of showing the bodies as merely absent, and
    says it without the proxy's internal error text."""
    record = make_record(
        request_body=None,
        response_body=None,
        extra={"body_error": "StoreUnavailable: s3 at http://10.0.0.7:8333 refused: boom"},
    )
    ctx = make_ctx(record)
    LoadBodies(bodies)(ctx)
    assert ctx.row.properties["llmtap-body-error"] == "store_refused"
    assert ctx.request_body is None and ctx.response_body is None

    clean = make_ctx(make_record(request_body=None, response_body=None))
    LoadBodies(bodies)(clean)
    assert "llmtap-body-error" not in clean.row.properties
