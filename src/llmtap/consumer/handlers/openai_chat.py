"""OpenAI Chat Completions responses (and every OpenAI-compatible server's), JSON and streamed.

Usage sits in ``usage`` — in a stream, on the extra chunk ``stream_options.include_usage`` asks
for, whose ``choices`` is ``[]`` at OpenAI but not empty at some compatible servers — or under
``x_groq.usage`` on Groq's last chunk. Streams where several chunks carry usage (vLLM's
continuous usage stats) are cumulative, so the last one wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmtap.consumer.handlers.json_body import json_events
from llmtap.consumer.handlers.sse import SseEvent
from llmtap.consumer.handlers.usage import ParsedResponse, Usage, count, dig, items, text


def error_name(error: Any) -> str | None:
    """A short name for an ``error`` member: its type, else code, else message."""
    if isinstance(error, dict):
        for key in ("type", "code", "message"):
            if (value := error.get(key)) is not None and str(value):
                return str(value)
        return "error"
    return text(error)


def chat_usage(usage: Any) -> Usage | None:
    """OpenAI-shaped ``usage`` (``prompt_tokens`` include cached ones) in llmtap's convention."""
    if not isinstance(usage, dict):
        return None
    prompt = count(usage.get("prompt_tokens"))
    completion = count(usage.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    cache_read = count(dig(usage, "prompt_tokens_details", "cached_tokens"))
    if cache_read is None:
        # DeepSeek: prompt_tokens = prompt_cache_hit_tokens + prompt_cache_miss_tokens
        cache_read = count(usage.get("prompt_cache_hit_tokens"))
    if completion is None and prompt is not None and (total := count(usage.get("total_tokens"))):
        # embeddings-style usage: no completion part, total = prompt
        completion = total - prompt if total >= prompt else None
    return Usage(
        input=prompt,
        output=completion,
        cache_read=cache_read,
        cache_write=count(dig(usage, "prompt_tokens_details", "cache_write_tokens")),
        reasoning=count(dig(usage, "completion_tokens_details", "reasoning_tokens")),
        audio_input=count(dig(usage, "prompt_tokens_details", "audio_tokens")),
        audio_output=count(dig(usage, "completion_tokens_details", "audio_tokens")),
        total=count(usage.get("total_tokens")),
    ).with_total()


def _finish_reason(choices: Any) -> str | None:
    if not isinstance(choices, list):
        return None
    # n > 1: report the first choice's reason, the one SDK helpers show
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return text(choice.get("finish_reason"))
    return None


def parse_chat_json(doc: Any) -> ParsedResponse:
    parsed = ParsedResponse()
    if not isinstance(doc, dict):
        return parsed
    if "error" in doc and "choices" not in doc:
        parsed.error = error_name(doc["error"])
        return parsed
    parsed.model = text(doc.get("model"))
    parsed.finish_reason = _finish_reason(doc.get("choices"))
    parsed.usage = chat_usage(doc.get("usage")) or chat_usage(dig(doc, "x_groq", "usage"))
    if tier := text(doc.get("service_tier")):
        parsed.price_context["service_tier"] = tier
    for choice in items(doc.get("choices")):
        parsed.tool_calls += len(items(dig(choice, "message", "tool_calls")))
    return parsed


def _plain_delta(data: str) -> bool:
    """A chunk that only adds content to one choice: nothing in it changes what we record.

    Substring tests on the raw JSON are safe here because a quote inside a JSON string is
    escaped: generated text can never contain the unescaped ``"finish_reason":null``.
    """
    return (
        data.count('"finish_reason"') == 1
        and ('"finish_reason":null' in data or '"finish_reason": null' in data)
        and '"tool_calls"' not in data
        and '"error"' not in data
        and '"x_groq"' not in data
        and ('"usage"' not in data or '"usage":null' in data or '"usage": null' in data)
    )


def parse_chat_stream(events: Iterable[SseEvent]) -> ParsedResponse:
    parsed = ParsedResponse(complete=False)
    tier: Any = None

    def skip(data: str) -> bool:
        if data == "[DONE]" or data.strip() == "[DONE]":
            parsed.complete = True
            return True
        return parsed.model is not None and _plain_delta(data)

    # This loop runs once per token of every streamed call: it touches only what it needs.
    for _event, chunk in json_events(events, parsed, skip):
        choices = chunk.get("choices")
        if "error" in chunk and not choices:
            parsed.error = error_name(chunk["error"])
            continue
        if parsed.model is None:
            parsed.model = text(chunk.get("model"))
        if type(choices) is list:
            for choice in choices:
                if type(choice) is not dict:
                    continue
                reason = choice.get("finish_reason")
                if reason and choice.get("index", 0) == 0 and isinstance(reason, str):
                    parsed.finish_reason = reason
                delta = choice.get("delta")
                if type(delta) is dict and (calls := delta.get("tool_calls")):
                    # a call's first delta carries its id; later deltas only add arguments
                    parsed.tool_calls += sum(
                        1 for call in items(calls) if isinstance(call, dict) and call.get("id")
                    )
        usage = chunk.get("usage")
        if usage is not None or "x_groq" in chunk:
            found = chat_usage(usage) or chat_usage(dig(chunk, "x_groq", "usage"))
            if found is not None:
                parsed.usage = found
        tier = chunk.get("service_tier", tier)
    if text(tier):
        parsed.price_context["service_tier"] = tier
    return parsed
