"""Anthropic Messages API: ``POST /v1/messages`` (and ``/v1/messages/count_tokens``).

A stream runs ``message_start`` (usage: input and cache tokens, ``output_tokens: 1``) →
``content_block_start`` → ``ping`` → ``content_block_delta``… (``text_delta``, or
``input_json_delta`` for a ``tool_use`` block) → ``content_block_stop`` → ``message_delta``
(``stop_reason`` and the final ``usage.output_tokens``) → ``message_stop``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmtap.testing.mock_errors import anthropic_error
from llmtap.testing.mock_http import EVENT_STREAM, Ids, Reply, encode
from llmtap.testing.mock_knobs import Knobs
from llmtap.testing.mock_plan import MockUsage, Plan, make_plan, words_of
from llmtap.testing.sse import sse_event


def anthropic_tool(body: dict[str, Any]) -> tuple[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(tools, list) or kind == "none":
        return None
    # Server tools (web search, code execution...) carry a versioned type; they are not called.
    custom = [
        t
        for t in tools
        if isinstance(t, dict) and t.get("type") in (None, "custom") and "name" in t
    ]
    if kind == "tool" and isinstance(choice, dict):
        wanted = choice.get("name")
        for t in custom:
            if t["name"] == wanted:
                return str(wanted), t.get("input_schema")
        return str(wanted), None
    if not custom:
        return None
    return str(custom[0]["name"]), custom[0].get("input_schema")


def plan_messages(body: dict[str, Any], knobs: Knobs) -> Plan:
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    return make_plan(
        prompt=[body.get("system"), messages],
        last=last,
        max_tokens=body.get("max_tokens"),
        tool=anthropic_tool(body),
        knobs=knobs,
        provider="anthropic",
    )


def message_usage(usage: MockUsage, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_creation_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _validate(body: dict[str, Any]) -> Reply | None:
    for field in ("model", "messages", "max_tokens"):
        if field not in body:
            return anthropic_error(400, f"{field}: Field required")
    if not isinstance(body["messages"], list) or not body["messages"]:
        return anthropic_error(400, "messages: at least one message is required")
    if not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool):
        return anthropic_error(400, "max_tokens: Input should be a valid integer")
    return None


def count_tokens(body: dict[str, Any]) -> Reply:
    if not isinstance(body.get("messages"), list):
        return anthropic_error(400, "messages: Field required")
    tokens = max(1, len(words_of([body.get("system"), body["messages"]])))
    return Reply(status=200, body=encode({"input_tokens": tokens}))


def messages(body: dict[str, Any], knobs: Knobs, ids: Ids) -> Reply:
    invalid = _validate(body)
    if invalid is not None:
        return invalid
    plan = plan_messages(body, knobs)
    tool = plan.tool_call
    if tool is not None:
        stop_reason = "tool_use"
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": ids.next("toolu_"),
            "name": tool.name,
            "input": msgspec.json.decode(tool.arguments),
        }
    else:
        stop_reason = "max_tokens" if plan.truncated else "end_turn"
        block = {"type": "text", "text": plan.text}
    message: dict[str, Any] = {
        "id": ids.next("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": message_usage(plan.usage, plan.usage.output_tokens),
    }
    if knobs.no_usage:
        del message["usage"]
    if body.get("stream") is not True:
        return Reply(status=200, body=encode(message))
    return _stream(message, block, plan, knobs)


def _stream(message: dict[str, Any], block: dict[str, Any], plan: Plan, knobs: Knobs) -> Reply:
    frames: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        frames.append(sse_event(kind.encode(), encode({"type": kind, **fields})))

    start_message = {**message, "content": [], "stop_reason": None}
    if not knobs.no_usage:
        start_message["usage"] = message_usage(plan.usage, 1)
    emit("message_start", message=start_message)
    if block["type"] == "tool_use":
        emit("content_block_start", index=0, content_block={**block, "input": {}})
        deltas = [
            {"type": "input_json_delta", "partial_json": p}
            for p in (plan.tool_call.pieces if plan.tool_call else ())
        ]
    else:
        emit("content_block_start", index=0, content_block={"type": "text", "text": ""})
        deltas = [{"type": "text_delta", "text": p} for p in plan.pieces]
    emit("ping")
    start = len(frames)
    for delta in deltas:
        emit("content_block_delta", index=0, delta=delta)
    end = len(frames)
    emit("content_block_stop", index=0)
    final: dict[str, Any] = {
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None}
    }
    if not knobs.no_usage:
        final["usage"] = {"output_tokens": plan.usage.output_tokens}
    emit("message_delta", **final)
    emit("message_stop")
    return Reply(
        status=200, content_type=EVENT_STREAM, frames=frames, content_start=start, content_end=end
    )
