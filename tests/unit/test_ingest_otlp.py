"""OTLP trace exports (protobuf and JSON) from the OpenTelemetry SDK, mapped to records and read
by the consumer's real handlers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from ingest_chain import consume
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from llmtap.ingest.errors import BadLog
from llmtap.ingest.otlp_decode import Span, decode_json, decode_protobuf
from llmtap.ingest.otlp_genai import build_span_record, is_llm_span

NEW_STYLE: dict[str, AttributeValue] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.openai.api_base": "http://127.0.0.1:9999/v1/",
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hey"}], "finish_reason": "stop"}]),
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 200,
    "traceloop.association.properties.user_id": "alice",
    "traceloop.association.properties.session_id": "conv-7",
    "traceloop.association.properties.team": "search",
}  # fmt: skip
OLD_STYLE: dict[str, AttributeValue] = {
    "llm.request.type": "chat",
    "gen_ai.system": "Anthropic",
    "gen_ai.request.model": "claude-3-5-haiku-20241022",
    "gen_ai.response.model": "claude-3-5-haiku-20241022",
    "gen_ai.prompt.0.role": "user",
    "gen_ai.prompt.0.content": "hi",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "hey",
    "gen_ai.completion.0.finish_reason": "end_turn",
    "gen_ai.usage.prompt_tokens": 100,
    "gen_ai.usage.completion_tokens": 20,
    "llm.usage.total_tokens": 120,
    "llm.is_streaming": True,
}


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    # a provider of the test's own: the global one is never touched
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    provider.shutdown()


def record_spans(
    setup: tuple[TracerProvider, InMemorySpanExporter],
    *llm: dict[str, AttributeValue],
    error: bool = False,
) -> Sequence[ReadableSpan]:
    provider, memory = setup
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "wf.workflow", attributes={"traceloop.span.kind": "workflow"}
    ):
        for attrs in llm:
            with tracer.start_as_current_span("llm", kind=SpanKind.CLIENT, attributes=attrs) as s:
                if error:
                    s.set_status(Status(StatusCode.ERROR, "RateLimitError: slow down"))
        with tracer.start_as_current_span("GET /health", attributes={"http.request.method": "GET"}):
            pass
    return memory.get_finished_spans()


def protobuf(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def otlp_json(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP/JSON encoding: protobuf's JSON mapping with hex trace and span ids."""
    doc = MessageToDict(encode_spans(spans))

    def hexify(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(doc)
    return json.dumps(doc).encode()


def llm_spans(spans: list[Span]) -> list[Span]:
    return [s for s in spans if is_llm_span(s)]


def test_a_genai_span_becomes_a_priced_row_with_trace_ids(exporter, tmp_path: Path) -> None:
    sdk_spans = record_spans(exporter, NEW_STYLE)
    spans = decode_protobuf(protobuf(sdk_spans))
    assert len(spans) == 3
    (span,) = llm_spans(spans)
    sdk_span = next(s for s in sdk_spans if s.name == "llm")
    row, _ = consume(build_span_record(span, org_id="org-1", key_hash="h"), tmp_path)
    assert row.source == "otel"
    assert row.provider == "openai"
    assert row.endpoint == "chat.completions"
    assert (row.model, row.response_model) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (1200, 300, 1500)
    assert row.cache_read_tokens == 200
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens
    assert row.cost_nano_usd == 1000 * 150 + 200 * 75 + 300 * 600
    assert row.finish_reason == "stop"
    assert (row.user_id, row.session_id, row.properties) == ("alice", "conv-7", {"team": "search"})
    assert row.trace_id == f"{sdk_span.context.trace_id:032x}"
    assert row.span_id == f"{sdk_span.context.span_id:016x}"
    assert sdk_span.parent is not None
    assert row.parent_span_id == f"{sdk_span.parent.span_id:016x}"
    assert row.created_unix_ms == pytest.approx(sdk_span.start_time / 1e6)
    assert row.latency_ms == pytest.approx(
        (sdk_span.end_time - sdk_span.start_time) / 1e6, abs=1e-3
    )
    assert row.status == 200 and row.error is None


def test_prompts_and_completions_are_kept_as_bodies(exporter, tmp_path: Path) -> None:
    (span,) = llm_spans(decode_protobuf(protobuf(record_spans(exporter, NEW_STYLE))))
    ingested = build_span_record(span, org_id="org-1", key_hash="h")
    assert ingested.record.extra["bodies"] == "span-attributes"
    _, ctx = consume(ingested, tmp_path)
    assert ctx.request_json["messages"][0]["parts"][0]["content"] == "hi"
    assert ctx.response_body is not None and b'"hey"' in ctx.response_body


def test_older_openllmetry_attributes_are_read(exporter, tmp_path: Path) -> None:
    (span,) = llm_spans(decode_protobuf(protobuf(record_spans(exporter, OLD_STYLE))))
    row, ctx = consume(build_span_record(span, org_id="org-1", key_hash="h"), tmp_path)
    assert row.provider == "anthropic"
    assert row.endpoint == "messages"
    assert row.target_url == "https://api.anthropic.com/v1/messages"
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (100, 20, 120)
    assert row.cost_nano_usd is not None and row.cost_nano_usd > 0
    assert row.streamed
    assert ctx.request_json["messages"] == [{"role": "user", "content": "hi"}]


def test_json_and_protobuf_exports_read_the_same(exporter) -> None:
    sdk_spans = record_spans(exporter, NEW_STYLE, OLD_STYLE)
    assert decode_json(otlp_json(sdk_spans)) == decode_protobuf(protobuf(sdk_spans))


def test_only_llm_spans_are_calls(exporter) -> None:
    spans = decode_protobuf(protobuf(record_spans(exporter, NEW_STYLE, OLD_STYLE)))
    assert sorted(s.name for s in spans if not is_llm_span(s)) == ["GET /health", "wf.workflow"]
    tool = Span("a" * 32, "b" * 16, None, "tool", 0, 1, {"gen_ai.operation.name": "execute_tool", "gen_ai.provider.name": "openai"})  # fmt: skip
    assert not is_llm_span(tool)


def test_a_resent_span_or_a_second_span_of_the_same_call_is_the_same_request(exporter) -> None:
    spans = llm_spans(decode_protobuf(protobuf(record_spans(exporter, NEW_STYLE, NEW_STYLE))))
    first, second = (build_span_record(s, org_id="o", key_hash="h").record for s in spans)
    assert first.span_id != second.span_id
    assert first.request_id == second.request_id  # same trace, same provider response id
    again = build_span_record(spans[0], org_id="o", key_hash="h").record
    assert again.request_id == first.request_id


def test_a_failed_call_is_logged_with_its_error(exporter, tmp_path: Path) -> None:
    attrs = {k: v for k, v in NEW_STYLE.items() if not k.startswith("gen_ai.usage")}
    (span,) = llm_spans(decode_protobuf(protobuf(record_spans(exporter, attrs, error=True))))
    row, _ = consume(build_span_record(span, org_id="org-1", key_hash="h"), tmp_path)
    assert (row.status, row.error) == (0, "RateLimitError: slow down")
    assert row.usage_source == "unknown" and row.cost_nano_usd is None


@pytest.mark.parametrize(
    "body",
    [b"\xff\xff\xff\xff garbage", b"\x0a\x05\x0a\x03\x0a\x01"],
    ids=["not-protobuf", "truncated"],
)
def test_invalid_protobuf_is_refused(body: bytes) -> None:
    with pytest.raises(BadLog, match="invalid protobuf"):
        decode_protobuf(body)


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"resourceSpans": 3}', "invalid OTLP export"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "not hex"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0102", "spanId": "0102030405060708"}]}]}]}',
            "traceId must be 16",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}',
            "invalid OTLP export",
        ),
    ],
)
def test_malformed_json_exports_are_refused_naming_the_problem(doc: bytes, problem: str) -> None:
    with pytest.raises(BadLog, match=problem):
        decode_json(doc)
