"""OTLP/HTTP traces: ``POST /v1/traces`` with ``application/x-protobuf`` or ``application/json``.

LLM spans (OpenTelemetry GenAI conventions, OpenLLMetry / traceloop-sdk) become logged calls;
other spans (workflows, tasks, tools, HTTP, DB) are ignored. The answer is an OTLP
``ExportTraceServiceResponse`` in the request's encoding, sent only once the records are in the
queue, with the counts in ``Llmtap-Spans-Logged`` / ``Llmtap-Spans-Ignored`` headers (and, when
spans were ignored, as a ``partial_success`` warning with no rejected span, as OTLP allows).
A queue that refuses gives 503, which OTLP exporters retry; span-derived request ids make the
retry land on the same rows.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.concurrency import run_in_threadpool

from llmtap.api.ingest_http import EXPECTED, Ingestion, failure_response, in_thread
from llmtap.ingest.errors import UnsupportedMediaType
from llmtap.ingest.otlp_decode import decode_json, decode_protobuf
from llmtap.ingest.otlp_genai import build_span_record, is_llm_span

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _encoding(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    if media in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if media == JSON:
        return JSON
    raise UnsupportedMediaType(
        f"content-type {content_type!r}: send {PROTOBUF} or {JSON} (OTLP/HTTP)"
    )


def _answer(encoding: str, logged: int, ignored: int) -> Response:
    message = ExportTraceServiceResponse()
    if ignored:
        message.partial_success.rejected_spans = 0
        message.partial_success.error_message = (
            f"{ignored} span(s) are not LLM calls and were not logged"
        )
    headers = {"Llmtap-Spans-Logged": str(logged), "Llmtap-Spans-Ignored": str(ignored)}
    if encoding == PROTOBUF:
        return Response(message.SerializeToString(), media_type=PROTOBUF, headers=headers)
    return Response(json.dumps(MessageToDict(message)), media_type=JSON, headers=headers)


def otlp_traces_router(ingestion: Ingestion) -> APIRouter:
    router = APIRouter(tags=["ingestion"])

    @router.post(
        "/v1/traces",
        summary="OTLP/HTTP trace export: LLM spans become logged calls",
        response_class=Response,
    )
    async def traces(request: Request) -> Response:
        try:
            caller = await run_in_threadpool(ingestion.caller, request)
            encoding = _encoding(request.headers.get("content-type", ""))
            body = await ingestion.read_body(request)

            def work() -> tuple[int, int]:
                spans = decode_protobuf(body) if encoding == PROTOBUF else decode_json(body)
                built = [
                    build_span_record(span, org_id=caller.org_id, key_hash=caller.key_hash)
                    for span in spans
                    if is_llm_span(span)
                ]
                ingestion.publisher.publish(built)
                return len(built), len(spans) - len(built)

            logged, ignored = await in_thread(work)
        except EXPECTED as exc:
            return failure_response(exc)
        ingestion.spans_ignored += ignored
        return _answer(encoding, logged, ignored)

    return router
