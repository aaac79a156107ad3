"""OpenAI Responses API, JSON and streamed.

A stream ends with one terminal event carrying the whole ``response`` object, usage included:
``response.completed``, ``response.incomplete`` (e.g. ``max_output_tokens``; still billed) or
``response.failed``. ``finish_reason`` is the response's own vocabulary: ``completed``,
``failed``, or the ``incomplete_details.reason`` of an incomplete response.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmtap.consumer.handlers.json_body import json_events
from llmtap.consumer.handlers.openai_chat import error_name
from llmtap.consumer.handlers.sse import SseEvent
from llmtap.consumer.handlers.usage import ParsedResponse, Usage, count, dig, items, text

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    input_tokens = count(usage.get("input_tokens"))
    output_tokens = count(usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    return Usage(
        input=input_tokens,
        output=output_tokens,
        cache_read=count(dig(usage, "input_tokens_details", "cached_tokens")),
        cache_write=count(dig(usage, "input_tokens_details", "cache_write_tokens")),
        reasoning=count(dig(usage, "output_tokens_details", "reasoning_tokens")),
        total=count(usage.get("total_tokens")),
    ).with_total()


def _read_response(response: Any, parsed: ParsedResponse) -> None:
    if not isinstance(response, dict):
        return
    parsed.model = text(response.get("model")) or parsed.model
    status = text(response.get("status"))
    if status == "incomplete":
        parsed.finish_reason = text(dig(response, "incomplete_details", "reason")) or status
    elif status in ("completed", "failed", "cancelled"):
        parsed.finish_reason = status
    if response.get("error") is not None:
        parsed.error = error_name(response["error"])
    usage = responses_usage(response.get("usage"))
    if usage is not None:
        parsed.usage = usage
    if tier := text(response.get("service_tier")):
        parsed.price_context["service_tier"] = tier
    calls = [i for i in items(response.get("output")) if dig(i, "type") == "function_call"]
    parsed.tool_calls = max(parsed.tool_calls, len(calls))


def parse_responses_json(doc: Any) -> ParsedResponse:
    parsed = ParsedResponse()
    if isinstance(doc, dict) and "error" in doc and "object" not in doc:
        parsed.error = error_name(doc["error"])
        return parsed
    _read_response(doc, parsed)
    return parsed


def parse_responses_stream(events: Iterable[SseEvent]) -> ParsedResponse:
    parsed = ParsedResponse(complete=False)
    tool_calls = 0
    for event, data in json_events(events, parsed):
        kind = text(data.get("type")) or event.event
        if kind in _TERMINAL:
            parsed.complete = True
            _read_response(data.get("response"), parsed)
        elif kind in ("response.created", "response.in_progress"):
            _read_response(data.get("response"), parsed)
        elif kind == "response.output_item.done":
            tool_calls += dig(data, "item", "type") == "function_call"
        elif kind == "error":
            # {"type": "error", "code": ..., "message": ...}: "type" names the event, not the error
            parsed.error = text(data.get("code")) or text(data.get("message")) or "error"
    parsed.tool_calls = max(parsed.tool_calls, tool_calls)
    return parsed
