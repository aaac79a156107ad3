"""OpenAI Responses API: ``POST /v1/responses``, a ``response`` object or named SSE events.

A stream runs ``response.created`` → ``response.in_progress`` → ``response.output_item.added``
→ (``response.content_part.added`` → ``response.output_text.delta``… → ``response.output_text.done``
→ ``response.content_part.done``) or (``response.function_call_arguments.delta``… →
``response.function_call_arguments.done``) → ``response.output_item.done`` →
``response.completed`` (``response.incomplete`` when ``max_output_tokens`` cut the reply), every
event with a ``sequence_number``; usage arrives only on the last one.
"""

from __future__ import annotations

from typing import Any

from llmtap.testing.mock_http import EVENT_STREAM, Ids, Reply, encode, now
from llmtap.testing.mock_knobs import Knobs
from llmtap.testing.mock_openai import missing, snapshot
from llmtap.testing.mock_plan import MockUsage, Plan, make_plan
from llmtap.testing.sse import sse_event


def responses_tool(body: dict[str, Any]) -> tuple[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or choice == "none":
        return None
    functions = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
    if isinstance(choice, dict) and choice.get("type") == "function":
        wanted = choice.get("name")
        for fn in functions:
            if fn.get("name") == wanted:
                return str(wanted), fn.get("parameters")
        return str(wanted), None
    if not functions:
        return None
    return str(functions[0].get("name")), functions[0].get("parameters")


def plan_responses(body: dict[str, Any], knobs: Knobs) -> Plan:
    given = body.get("input")
    last = given[-1] if isinstance(given, list) and given else given
    return make_plan(
        prompt=[body.get("instructions"), given],
        last=last,
        max_tokens=body.get("max_output_tokens"),
        tool=responses_tool(body),
        knobs=knobs,
        provider="openai",
    )


def responses_usage(usage: MockUsage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _echo(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def responses(body: dict[str, Any], knobs: Knobs, ids: Ids) -> Reply:
    if not isinstance(body.get("model"), str):
        return missing("model")
    plan = plan_responses(body, knobs)
    status = "incomplete" if plan.truncated else "completed"
    resource: dict[str, Any] = {
        "id": ids.next("resp_"),
        "object": "response",
        "created_at": now(),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if plan.truncated else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": snapshot(body["model"]),
        "output": [],
        "parallel_tool_calls": _echo(body, "parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": _echo(body, "reasoning", {"effort": None, "summary": None}),
        "service_tier": "default",
        "store": _echo(body, "store", True),
        "temperature": _echo(body, "temperature", 1.0),
        "text": _echo(body, "text", {"format": {"type": "text"}}),
        "tool_choice": _echo(body, "tool_choice", "auto"),
        "tools": _echo(body, "tools", []),
        "top_p": _echo(body, "top_p", 1.0),
        "truncation": _echo(body, "truncation", "disabled"),
        "usage": responses_usage(plan.usage),
        "user": body.get("user"),
        "metadata": _echo(body, "metadata", {}),
    }
    if knobs.no_usage:
        del resource["usage"]
    tool = plan.tool_call
    if tool is not None:
        item: dict[str, Any] = {
            "id": ids.next("fc_"),
            "type": "function_call",
            "status": "completed",
            "arguments": tool.arguments,
            "call_id": ids.next("call_"),
            "name": tool.name,
        }
    else:
        item = {
            "id": ids.next("msg_"),
            "type": "message",
            "status": status,
            "content": [_text_part(plan.text)],
            "role": "assistant",
        }
    if body.get("stream") is not True:
        resource["output"] = [item]
        return Reply(status=200, body=encode(resource))
    return _stream(resource, item, plan)


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _stream(resource: dict[str, Any], item: dict[str, Any], plan: Plan) -> Reply:
    frames: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        event = {"type": kind, "sequence_number": len(frames), **fields}
        frames.append(sse_event(kind.encode(), encode(event)))

    pending = {**resource, "status": "in_progress", "incomplete_details": None, "output": []}
    if "usage" in pending:
        pending["usage"] = None
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    where = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "function_call":
        emit(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "arguments": ""},
        )
        start = len(frames)
        pieces = plan.tool_call.pieces if plan.tool_call else ()
        for piece in pieces:
            emit("response.function_call_arguments.delta", **where, delta=piece)
        end = len(frames)
        emit(
            "response.function_call_arguments.done",
            **where,
            name=item["name"],
            arguments=item["arguments"],
        )
    else:
        at = {**where, "content_index": 0}
        emit(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        )
        emit("response.content_part.added", **at, part=_text_part(""))
        start = len(frames)
        for piece in plan.pieces:
            emit("response.output_text.delta", **at, delta=piece, logprobs=[])
        end = len(frames)
        emit("response.output_text.done", **at, text=plan.text, logprobs=[])
        emit("response.content_part.done", **at, part=_text_part(plan.text))
    emit("response.output_item.done", output_index=0, item=item)
    final = "response.incomplete" if resource["status"] == "incomplete" else "response.completed"
    emit(final, response={**resource, "output": [item]})
    return Reply(
        status=200, content_type=EVENT_STREAM, frames=frames, content_start=start, content_end=end
    )
