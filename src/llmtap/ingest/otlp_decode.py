"""OTLP/HTTP trace export bodies (protobuf or JSON) as plain ``Span`` values.

Both encodings are read into the same ``ExportTraceServiceRequest`` message from
``opentelemetry-proto``. OTLP's JSON differs from protobuf's canonical JSON in one way that
matters: trace and span ids are hex strings, not base64, so they are converted before parsing.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import msgspec
from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from llmtap.ingest.errors import BadLog
from llmtap.ingest.values import decode_nested

AttrValue = str | bool | int | float | bytes | list[Any] | dict[str, Any] | None
STATUS_ERROR = Status.STATUS_CODE_ERROR
MAX_ATTRIBUTE_VALUES = 4096
"""Attribute values one span (or one resource) may carry, nested arrays and maps counted: the
OpenTelemetry SDKs keep 128 by default, so this only refuses a body built to make the backend
spend CPU (and the consumer's GIL time) walking hundreds of thousands of values."""


class _Budget:
    __slots__ = ("left", "where")

    def __init__(self, where: str) -> None:
        self.left = MAX_ATTRIBUTE_VALUES
        self.where = where

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise BadLog(
                f"invalid OTLP export: {self.where} has more than {MAX_ATTRIBUTE_VALUES} "
                "attribute values"
            )


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str
    """32 hex digits."""
    span_id: str
    """16 hex digits."""
    parent_span_id: str | None
    name: str
    start_unix_nano: int
    end_unix_nano: int
    attributes: dict[str, AttrValue]
    status_error: bool = False
    status_message: str = ""
    resource: dict[str, AttrValue] = field(default_factory=dict)


def _value(value: AnyValue, budget: _Budget) -> AttrValue:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value
    if kind == "array_value":
        values = value.array_value.values
        budget.take(len(values))
        return [_value(v, budget) for v in values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values, budget)
    return None


def _attributes(pairs: Any, budget: _Budget) -> dict[str, AttrValue]:
    budget.take(len(pairs))
    out: dict[str, AttrValue] = {}
    kv: KeyValue
    for kv in pairs:
        out[kv.key] = _value(kv.value, budget)
    return out


def _span(span: PbSpan, resource: dict[str, AttrValue], where: str) -> Span:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise BadLog(f"invalid OTLP export: {where}.traceId must be 16 non-zero bytes")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise BadLog(f"invalid OTLP export: {where}.spanId must be 8 non-zero bytes")
    if span.parent_span_id and len(span.parent_span_id) != 8:
        raise BadLog(f"invalid OTLP export: {where}.parentSpanId must be 8 bytes or empty")
    return Span(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() if any(span.parent_span_id) else None,
        name=span.name,
        start_unix_nano=span.start_time_unix_nano,
        end_unix_nano=max(span.end_time_unix_nano, span.start_time_unix_nano),
        attributes=_attributes(span.attributes, _Budget(where)),
        status_error=span.status.code == STATUS_ERROR,
        status_message=span.status.message,
        resource=resource,
    )


def spans_of(request: ExportTraceServiceRequest) -> list[Span]:
    spans: list[Span] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(
            resource_spans.resource.attributes, _Budget(f"resourceSpans[{r}].resource")
        )
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                spans.append(_span(span, resource, where))
    return spans


def decode_protobuf(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BadLog(f"invalid protobuf: not an OTLP ExportTraceServiceRequest ({exc})") from None
    return spans_of(request)


_MAX_MESSAGE = 300  # protobuf quotes the offending value, which may be megabytes long
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: Any, where: str) -> None:
    """OTLP JSON ids are hex; protobuf's JSON mapping expects base64 for bytes fields."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _hex_ids_to_base64(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _ID_FIELDS and isinstance(value, str):
            try:
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise BadLog(f"invalid OTLP export: {where}.{key} is not hex") from None
        elif isinstance(value, dict | list):
            _hex_ids_to_base64(value, f"{where}.{key}")


def decode_json(body: bytes) -> list[Span]:
    try:
        doc = decode_nested(lambda: msgspec.json.decode(body), "the body")
    except msgspec.DecodeError as exc:
        raise BadLog(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadLog("invalid OTLP export: the body must be a JSON object with resourceSpans")
    decode_nested(lambda: _hex_ids_to_base64(doc, "$"), "the body")
    request = ExportTraceServiceRequest()
    try:
        decode_nested(lambda: ParseDict(doc, request, ignore_unknown_fields=True), "the body")
    except (ParseError, binascii.Error, ValueError, TypeError) as exc:
        raise BadLog(f"invalid OTLP export: {str(exc)[:_MAX_MESSAGE]}") from None
    return spans_of(request)
