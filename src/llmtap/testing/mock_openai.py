"""OpenAI chat completions: ``POST /v1/chat/completions``, JSON and SSE.

Shapes follow the API reference: a ``chat.completion`` object, or ``chat.completion.chunk``
events ending in ``data: [DONE]``. With ``stream_options.include_usage`` every chunk carries
``"usage": null`` and one last chunk with ``"choices": []`` carries the usage; without it no
chunk mentions usage. ``n`` is ignored: there is always one choice.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from llmtap.testing.mock_errors import openai_error
from llmtap.testing.mock_http import EVENT_STREAM, Ids, Reply, encode, now
from llmtap.testing.mock_knobs import Knobs
from llmtap.testing.mock_plan import MockUsage, Plan, make_plan
from llmtap.testing.sse import SSE_DONE, sse_data

SNAPSHOTS = MappingProxyType(
    {
        "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
        "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
        "gpt-4o": "gpt-4o-2024-08-06",
        "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
        "gpt-4.1": "gpt-4.1-2025-04-14",
        "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
        "o1": "o1-2024-12-17",
        "o3-mini": "o3-mini-2025-01-31",
        "o3": "o3-2025-04-16",
        "o4-mini": "o4-mini-2025-04-16",
        "gpt-5": "gpt-5-2025-08-07",
        "gpt-5-mini": "gpt-5-mini-2025-08-07",
        "gpt-5-nano": "gpt-5-nano-2025-08-07",
    }
)
"""Aliases OpenAI answers with a dated snapshot; any other model name is echoed as sent."""

FINGERPRINT = "fp_6c0mock7e1"


def snapshot(model: str) -> str:
    return SNAPSHOTS.get(model, model)


def missing(name: str) -> Reply:
    return openai_error(
        400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def chat_tool(body: dict[str, Any]) -> tuple[str, Any] | None:
    """The (name, parameters schema) of the function the reply calls, if it calls one."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    functions = [
        t["function"]
        for t in tools
        if isinstance(t, dict)
        and t.get("type") == "function"
        and isinstance(t.get("function"), dict)
    ]
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
        for fn in functions:
            if fn.get("name") == wanted:
                return wanted, fn.get("parameters")
        return str(wanted), None
    if not functions:
        return None
    return str(functions[0].get("name")), functions[0].get("parameters")


def plan_chat(body: dict[str, Any], knobs: Knobs) -> Plan:
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return make_plan(
        prompt=messages,
        last=last,
        max_tokens=max_tokens,
        tool=chat_tool(body),
        knobs=knobs,
        provider="openai",
    )


def chat_usage(usage: MockUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish(plan: Plan) -> str:
    if plan.tool_call is not None:
        return "tool_calls"
    return "length" if plan.truncated else "stop"


def chat_completions(body: dict[str, Any], knobs: Knobs, ids: Ids) -> Reply:
    if not isinstance(body.get("model"), str):
        return missing("model")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return missing("messages")
    plan = plan_chat(body, knobs)
    model = snapshot(body["model"])
    completion_id = ids.next("chatcmpl-")
    call_id = ids.next("call_") if plan.tool_call else ""
    if body.get("stream") is True:
        return _stream(body, plan, knobs, model, completion_id, call_id)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if plan.tool_call else plan.text,
        "refusal": None,
        "annotations": [],
    }
    if plan.tool_call is not None:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": plan.tool_call.name, "arguments": plan.tool_call.arguments},
            }
        ]
    completion: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(plan)}
        ],
        "usage": chat_usage(plan.usage),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if knobs.no_usage:
        del completion["usage"]
    return Reply(status=200, body=encode(completion))


def _stream(
    body: dict[str, Any], plan: Plan, knobs: Knobs, model: str, completion_id: str, call_id: str
) -> Reply:
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    on_last_content = knobs.usage_in_last_content_chunk and not knobs.no_usage
    separate_usage = include_usage and not knobs.no_usage and not on_last_content
    base: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": now(),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }

    def frame(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> bytes:
        chunk: dict[str, Any] = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage:
            chunk["usage"] = chat_usage(plan.usage)
        elif separate_usage:
            chunk["usage"] = None
        return sse_data(encode(chunk))

    tool = plan.tool_call
    if tool is not None:
        first: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool.name, "arguments": ""},
                }
            ],
            "refusal": None,
        }
        deltas: list[dict[str, Any]] = [
            {"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in tool.pieces
        ]
    else:
        first = {"role": "assistant", "content": "", "refusal": None}
        deltas = [{"content": p} for p in plan.pieces]
    finish = _finish(plan)
    frames = [frame(first)]
    for i, delta in enumerate(deltas):
        if on_last_content and i == len(deltas) - 1:
            frames.append(frame(delta, finish, usage=True))
        else:
            frames.append(frame(delta))
    end = len(frames)
    if not (on_last_content and deltas):
        frames.append(frame({}, finish, usage=on_last_content))
    if separate_usage:
        frames.append(sse_data(encode({**base, "choices": [], "usage": chat_usage(plan.usage)})))
    frames.append(SSE_DONE)
    return Reply(
        status=200, content_type=EVENT_STREAM, frames=frames, content_start=1, content_end=end
    )
