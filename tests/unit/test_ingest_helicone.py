"""Helicone async logs mapped to records, then read by the consumer's real handlers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ingest_chain import consume

from llmtap.capture.tap import as_header_list
from llmtap.ingest.errors import BadLog
from llmtap.ingest.helicone import LogKind, build_async_log, parse_async_log
from llmtap.keys import hash_key
from llmtap.stores.bodies.port import body_key

KEY = "sk-llmtap-test"
CHAT_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
CHAT_RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hey"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
}


def log_body(**parts: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "providerRequest": {"url": "custom-model-nopath", "json": CHAT_REQUEST, "meta": {}},
        "providerResponse": {"json": CHAT_RESPONSE, "status": 200, "headers": {}},
        "timing": {
            "startTime": {"seconds": 1_764_000_000, "milliseconds": 250},
            "endTime": {"seconds": 1_764_000_001, "milliseconds": 750},
            "timeToFirstToken": 420.0,
        },
    }
    body.update(parts)
    return body


def build(
    body: dict[str, Any] | bytes,
    kind: LogKind = "oai",
    headers: dict[str, str] | None = None,
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return build_async_log(
        parse_async_log(raw),
        kind=kind,
        headers=as_header_list(headers or {}),
        org_id="org-1",
        key_hash=hash_key(KEY),
    )


def test_an_openai_log_becomes_a_priced_row_with_timings(tmp_path: Path) -> None:
    ingested = build(log_body())
    row, _ = consume(ingested, tmp_path)
    assert row.source == "async-log"
    assert row.provider == "openai"
    assert row.endpoint == "chat.completions"
    assert row.model == "gpt-4o-mini"
    assert row.response_model == "gpt-4o-mini-2024-07-18"
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (1200, 300, 1500)
    # gpt-4o-mini: $0.15 / $0.60 per million tokens
    assert row.cost_nano_usd == 1200 * 150 + 300 * 600
    assert row.created_unix_ms == 1_764_000_000_250
    assert row.latency_ms == 1500
    assert row.ttft_ms == 420
    assert row.status == 200
    assert ingested.record.extra["target_url"] == "inferred"


def test_meta_and_headers_carry_helicone_properties(tmp_path: Path) -> None:
    body = log_body()
    body["providerRequest"]["meta"] = {
        "Helicone-User-Id": "alice",
        "Helicone-Property-Team": "search",
        "Helicone-Session-Id": "s-1",
        "Helicone-Request-Id": "0b8f0c8e-3f5a-4c1e-9a57-5f1b1a2f9e11",
        "x-api-key": "sk-provider-secret",
    }
    headers = {
        "Helicone-Property-Env": "prod",
        "Helicone-Property-Team": "overridden-by-meta",
        "Helicone-Session-Path": "/plan",
    }
    ingested = build(body, headers=headers)
    record = ingested.record
    assert record.request_id == "0b8f0c8e-3f5a-4c1e-9a57-5f1b1a2f9e11"
    row, _ = consume(ingested, tmp_path)
    assert row.user_id == "alice"
    assert row.session_id == "s-1"
    assert row.session_path == "/plan"
    assert row.properties == {"team": "search", "env": "prod"}
    assert "sk-provider-secret" not in json.dumps(record.request_headers)
    assert record.request_headers["x-api-key"].startswith("<redacted:")


def test_secrets_in_the_logged_response_headers_are_redacted() -> None:
    body = log_body()
    body["providerResponse"]["headers"] = {"Helicone-Auth": f"Bearer {KEY}", "x-request-id": "r"}
    record = build(body).record
    assert KEY not in json.dumps(record.response_headers)
    assert record.response_headers["x-request-id"] == "r"


def test_omit_flags_keep_bodies_out_of_the_store() -> None:
    ingested = build(log_body(), headers={"Helicone-Omit-Request": "true"})
    assert ingested.record.request_body.omitted
    request_id = ingested.record.request_id
    assert [b.key for b in ingested.bodies] == [body_key("org-1", request_id, "response")]


def test_an_anthropic_log_is_read_as_messages(tmp_path: Path) -> None:
    response = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "hey"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }
    body = log_body()
    body["providerRequest"]["json"] = {"model": "claude-3-5-haiku-20241022", "max_tokens": 5}
    body["providerResponse"]["json"] = response
    row, _ = consume(build(body, kind="anthropic"), tmp_path)
    assert row.provider == "anthropic"
    assert row.endpoint == "messages"
    assert (row.input_tokens, row.output_tokens) == (100, 20)
    assert row.cost_nano_usd is not None and row.cost_nano_usd > 0


def test_a_log_builder_stream_text_body_is_read_as_a_stream(tmp_path: Path) -> None:
    chunks = [
        {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "he"}}]},
        {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}},
    ]  # fmt: skip
    body = log_body()
    body["providerResponse"] = {
        "json": {},
        "textBody": "\n".join(json.dumps(c) for c in chunks),
        "status": 200,
        "headers": {"content-type": "application/json"},
    }
    ingested = build(body)
    row, _ = consume(ingested, tmp_path)
    assert row.streamed
    assert (row.input_tokens, row.output_tokens) == (7, 2)
    assert ingested.record.extra["response_body"] == "ndjson-as-sse"


def test_a_custom_log_without_a_url_keeps_what_was_sent(tmp_path: Path) -> None:
    body = log_body()
    body["providerRequest"]["json"] = {"_type": "tool", "toolName": "weather", "input": {}}
    body["providerResponse"]["json"] = {"_type": "tool", "temperature": 18.5}
    row, _ = consume(build(body, kind="custom"), tmp_path)
    assert row.provider == "custom"
    assert row.target_url == "custom-model-nopath"
    assert row.usage_source == "unknown"
    assert row.cost_nano_usd is None


def test_a_real_provider_url_is_kept_redacted() -> None:
    body = log_body()
    body["providerRequest"]["url"] = "https://api.groq.com/openai/v1/chat/completions?key=abc"
    record = build(body, kind="custom").record
    assert record.target_url.startswith("https://api.groq.com/openai/v1/chat/completions?key=")
    assert "abc" not in record.target_url


def test_epoch_millisecond_timings_and_a_cancelled_call() -> None:
    body = log_body()
    body["timing"] = {"startTime": 1_764_000_000_000, "endTime": 1_764_000_000_900}
    body["providerResponse"]["status"] = -3
    record = build(body).record
    assert (record.timing.start_unix_ms, record.timing.total_ms) == (1_764_000_000_000, 900)
    assert (record.status, record.error) == (0, "client_cancelled")


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda b: b.pop("providerRequest"), "missing required field `providerRequest`"),
        (lambda b: b["providerRequest"].pop("json"), "missing required field `json`"),
        (lambda b: b["providerResponse"].update(status="200"), "`$.providerResponse.status`"),
        (lambda b: b["providerRequest"].update(json="hi"), "`$.providerRequest.json`"),
        (lambda b: b["providerRequest"].update(meta={"a": []}), "`$.providerRequest.meta[...]`"),
        (lambda b: b["timing"].update(startTime="now"), "`$.timing.startTime`"),
        (lambda b: b["providerResponse"].update(status=1234), "not an HTTP status"),
        (
            lambda b: b["timing"].update(endTime={"seconds": 1_763_000_000}),
            "endTime is before",
        ),
    ],
)
def test_malformed_logs_are_refused_naming_the_problem(mutate: Any, problem: str) -> None:
    body = log_body()
    body["providerRequest"] = dict(body["providerRequest"])
    body["providerResponse"] = dict(body["providerResponse"])
    body["timing"] = dict(body["timing"])
    mutate(body)
    with pytest.raises(BadLog) as caught:
        build(body)
    assert problem in str(caught.value)
    assert caught.value.status == 400


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'{"providerRequest": 1'])
def test_bodies_that_are_not_a_log_object_are_refused(raw: bytes) -> None:
    with pytest.raises(BadLog):
        build(raw)
