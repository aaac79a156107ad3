"""ResponseParser on bodies that are missing, broken or not what the endpoint promised."""

from __future__ import annotations

import zlib

import pytest

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.response_parser import NOTE_RESPONSE, ResponseParser
from llmtap.queue.port import Message
from llmtap.record import BodyRef, LogRecord, Timing
from llmtap.stores.row import RequestRow

CHAT = (
    b'{"id":"c","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":'
    b'[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}'
)


def context(
    body: bytes | None,
    endpoint: str | None = "chat.completions",
    headers: dict[str, str] | None = None,
    ref: BodyRef | None = None,
) -> Context:
    record = LogRecord(
        request_id="r1",
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        status=200,
        timing=Timing(start_unix_ms=0.0, total_ms=1.0),
        response_headers=headers or {},
        response_body=ref or BodyRef(key="k", size=len(body or b"")),
    )
    row = RequestRow(
        request_id="r1",
        org_id="o",
        created_unix_ms=0.0,
        source="proxy",
        provider="openai",
        method="POST",
        target_url=record.target_url,
        path="/v1/chat/completions",
        status=200,
        endpoint=endpoint,
    )
    return Context(Message("t", 0, 0, None, b"", 0), record, row, response_body=body)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (None, "no_body"),
        (b"", "no_body"),
        (b"<html>502 Bad Gateway</html>", "not_json"),
        (b"\x00\xff\xfe garbage", "invalid_utf8"),
        (b"[1, 2, 3]", "wrong_shape"),
        (b'"just a string"', "wrong_shape"),
        (b'{"choices": 7, "usage": {"prompt_tokens": -3, "completion_tokens": true}}', None),
    ],
)
def test_unusable_bodies_leave_usage_unknown_without_raising(
    body: bytes | None, problem: str | None
) -> None:
    ctx = context(body)
    ResponseParser()(ctx)
    assert ctx.row.usage_source == "unknown"
    assert ctx.row.input_tokens is None and ctx.row.output_tokens is None
    assert ctx.notes[NOTE_RESPONSE]["problem"] == problem


def test_omitted_body_says_so() -> None:
    ctx = context(None, ref=BodyRef(omitted=True))
    ResponseParser()(ctx)
    assert ctx.notes[NOTE_RESPONSE]["problem"] == "omitted"
    assert ctx.row.usage_source == "unknown"


def test_endpoint_unknown_is_sniffed_from_the_body() -> None:
    ctx = context(CHAT, endpoint="other")
    ResponseParser()(ctx)
    assert (ctx.row.input_tokens, ctx.row.output_tokens, ctx.row.usage_source) == (5, 2, "provider")


def test_anthropic_stream_sniffed_without_endpoint_or_content_type() -> None:
    body = (
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-x",'
        b'"usage":{"input_tokens":3,"cache_read_input_tokens":4,"output_tokens":1}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":9}}\n\n'
    )
    ctx = context(body, endpoint=None)
    ResponseParser()(ctx)
    row = ctx.row
    assert (row.input_tokens, row.cache_read_tokens, row.output_tokens) == (7, 4, 9)
    assert row.finish_reason == "end_turn"


def test_raw_deflate_and_mislabelled_encodings() -> None:
    raw = zlib.compressobj(wbits=-15)
    deflated = raw.compress(CHAT) + raw.flush()
    for body, encoding in ((deflated, "deflate"), (CHAT, "gzip")):
        ctx = context(body, headers={"Content-Encoding": encoding})
        ResponseParser()(ctx)
        assert ctx.row.total_tokens == 7, encoding


def test_brotli_is_reported_not_guessed() -> None:
    ctx = context(b"\x8b\x02\x80garbage", headers={"content-encoding": "br"})
    ResponseParser()(ctx)
    assert ctx.notes[NOTE_RESPONSE]["problem"] == "undecodable_encoding:br"
    assert ctx.row.usage_source == "unknown"


def test_gzip_bomb_is_inflated_only_up_to_the_limit() -> None:
    bomb = zlib.compress(b"{" + b" " * 10_000_000, 9)
    ctx = context(bomb, headers={"content-encoding": "deflate"})
    ResponseParser(max_decoded_bytes=1024)(ctx)
    assert ctx.notes[NOTE_RESPONSE]["problem"] == "not_json"


def chunk(choices: str, extra: str = "") -> bytes:
    return (
        b'data: {"object":"chat.completion.chunk","model":"m","choices":['
        + choices.encode()
        + b"]"
        + extra.encode()
        + b"}\n\n"
    )


def test_stream_text_that_looks_like_json_keys_cannot_fool_the_parser() -> None:
    # generated text quoting a finish reason and usage, then the real end of the stream
    tricky = r'{"index":0,"delta":{"content":"\"finish_reason\":\"stop\", \"usage\":{}"},"finish_reason":null}'
    body = (
        chunk('{"index":0,"delta":{"role":"assistant"},"finish_reason":null}')
        + chunk(tricky)
        + chunk('{"index":0,"delta":{},"finish_reason":"length"}')
        + chunk("", ',"usage":{"prompt_tokens":4,"completion_tokens":6,"total_tokens":10}')
        + b"data: [DONE]\n\n"
    )
    ctx = context(body, headers={"content-type": "text/event-stream"})
    ResponseParser()(ctx)
    assert (ctx.row.finish_reason, ctx.row.output_tokens) == ("length", 6)


def test_stream_with_two_choices_reports_the_first_choices_reason() -> None:
    body = (
        chunk('{"index":0,"delta":{"content":"a"},"finish_reason":null}')
        + chunk(
            '{"index":1,"delta":{},"finish_reason":"length"},'
            '{"index":0,"delta":{},"finish_reason":null}'
        )
        + chunk('{"index":0,"delta":{},"finish_reason":"stop"}')
    )
    ctx = context(body, headers={"content-type": "text/event-stream"})
    ResponseParser()(ctx)
    assert ctx.row.finish_reason == "stop"
    assert ctx.notes[NOTE_RESPONSE]["complete"] is False  # no [DONE]: cut off after the reason
    assert ctx.row.usage_source == "unknown"


def test_model_list_is_not_mistaken_for_embeddings() -> None:
    body = b'{"object":"list","data":[{"id":"gpt-4o","object":"model","owned_by":"system"}]}'
    for endpoint in ("models", "other"):
        ctx = context(body, endpoint=endpoint)
        ResponseParser()(ctx)
        assert ctx.row.usage_source == "unknown"
        assert ctx.row.response_model is None


def test_plain_body_labelled_brotli_is_still_read() -> None:
    ctx = context(CHAT, headers={"content-encoding": "br"})
    ResponseParser()(ctx)
    assert ctx.row.total_tokens == 7
