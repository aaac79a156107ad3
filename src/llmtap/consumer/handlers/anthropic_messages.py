"""Anthropic Messages API, JSON and streamed.

Anthropic's ``input_tokens`` *exclude* cache reads and writes; llmtap's ``input`` includes them,
so ``input = input_tokens + cache_creation_input_tokens + cache_read_input_tokens``.

In a stream, ``message_start`` carries the input side and a placeholder ``output_tokens``;
``message_delta`` carries the cumulative output count and, in newer API versions, may repeat or
revise the input and cache counts (later values win). Usage is known only once a
``message_delta`` with usage arrived: a stream cut before it has no final output count, and a
half-known number is not reported as the provider's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmtap.consumer.handlers.json_body import json_events
from llmtap.consumer.handlers.sse import SseEvent
from llmtap.consumer.handlers.usage import ParsedResponse, Usage, count, dig, text

# Anthropic usage member -> the raw counter it feeds
_RAW = {
    "input_tokens": ("input_tokens",),
    "cache_creation_input_tokens": ("cache_creation_input_tokens",),
    "cache_read_input_tokens": ("cache_read_input_tokens",),
    "cache_1h": ("cache_creation", "ephemeral_1h_input_tokens"),
    "output_tokens": ("output_tokens",),
    "thinking": ("output_tokens_details", "thinking_tokens"),
}


def _raw_usage(usage: Any) -> dict[str, int | None]:
    return {name: count(dig(usage, *path)) for name, path in _RAW.items()}


def _normalise(raw: dict[str, int | None]) -> Usage | None:
    base = raw.get("input_tokens")
    output = raw.get("output_tokens")
    if base is None and output is None:
        return None
    cache_write = raw.get("cache_creation_input_tokens")
    cache_read = raw.get("cache_read_input_tokens")
    return Usage(
        input=None if base is None else base + (cache_write or 0) + (cache_read or 0),
        output=output,
        cache_read=cache_read,
        cache_write=cache_write,
        cache_write_1h=raw.get("cache_1h"),
        reasoning=raw.get("thinking"),
    ).with_total()


def _error(doc: Any) -> str:
    return text(dig(doc, "error", "type")) or text(dig(doc, "error", "message")) or "error"


def _speed(usage: Any, parsed: ParsedResponse) -> None:
    if speed := text(dig(usage, "speed")):
        parsed.price_context["speed"] = speed


def parse_messages_json(doc: Any) -> ParsedResponse:
    parsed = ParsedResponse()
    if not isinstance(doc, dict):
        return parsed
    if doc.get("type") == "error" or ("error" in doc and "content" not in doc):
        parsed.error = _error(doc)
        return parsed
    parsed.model = text(doc.get("model"))
    parsed.finish_reason = text(doc.get("stop_reason"))
    parsed.usage = _normalise(_raw_usage(doc.get("usage")))
    _speed(doc.get("usage"), parsed)
    content = doc.get("content")
    if isinstance(content, list):
        parsed.tool_calls = sum(dig(block, "type") == "tool_use" for block in content)
    return parsed


def parse_messages_stream(events: Iterable[SseEvent]) -> ParsedResponse:
    parsed = ParsedResponse(complete=False)
    raw: dict[str, int | None] = {}
    final_usage = False
    for event, data in json_events(events, parsed):
        kind = text(data.get("type")) or event.event
        if kind == "message_start":
            message = data.get("message")
            parsed.model = text(dig(message, "model")) or parsed.model
            raw.update(_raw_usage(dig(message, "usage")))
            _speed(dig(message, "usage"), parsed)
        elif kind == "message_delta":
            parsed.finish_reason = text(dig(data, "delta", "stop_reason")) or parsed.finish_reason
            usage = data.get("usage")
            if isinstance(usage, dict):
                raw.update({k: v for k, v in _raw_usage(usage).items() if v is not None})
                final_usage = final_usage or count(usage.get("output_tokens")) is not None
        elif kind == "content_block_start":
            parsed.tool_calls += dig(data, "content_block", "type") == "tool_use"
        elif kind == "message_stop":
            parsed.complete = True
        elif kind == "error":
            parsed.error = _error(data)
    if final_usage:
        parsed.usage = _normalise(raw)
    elif raw:
        parsed.partial_usage = _normalise({**raw, "output_tokens": None})
    return parsed
