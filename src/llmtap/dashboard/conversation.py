"""A call's bodies as a conversation: messages with a role, text parts, images, tool calls and
tool results, read from the wire formats llmtap logs (OpenAI chat and responses, Anthropic
messages, and their streams). Anything it does not recognise is simply not shown as messages;
the raw JSON is always on the page too.

Images are shown only from ``data:image/...`` URLs (thumbnails, inline); a remote image URL is
shown as text and never fetched (the page's CSP would refuse it anyway).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_PART_CHARS = 20_000
"""A text part longer than this is cut on the page (the raw body has all of it)."""
_IMAGE_PREFIXES = ("data:image/png;", "data:image/jpeg;", "data:image/gif;", "data:image/webp;")


@dataclass(slots=True)
class Part:
    kind: str
    """``text``, ``image`` (``data`` URL in ``value``), ``image_url`` (a remote URL, as text),
    ``tool_call`` (``name`` and arguments in ``value``), ``tool_result``, ``other``."""
    value: str
    name: str = ""
    truncated: bool = False


@dataclass(slots=True)
class Message:
    role: str
    parts: list[Part] = field(default_factory=list)


def _text(value: str, kind: str = "text", name: str = "") -> Part:
    if len(value) > MAX_PART_CHARS:
        return Part(kind, value[:MAX_PART_CHARS], name, truncated=True)
    return Part(kind, value, name)


def _dump(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def _image(url: Any) -> Part:
    url = str(url)
    if url.startswith(_IMAGE_PREFIXES):
        return Part("image", url)
    return _text(url, "image_url")


def _parts(content: Any) -> list[Part]:
    """Content as OpenAI (string, or a list of typed parts) or Anthropic (blocks) put it."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)]
    if not isinstance(content, list):
        return [_text(_dump(content), "other")]
    parts: list[Part] = []
    for item in content:
        if not isinstance(item, dict):
            parts.append(_text(_dump(item), "other"))
            continue
        kind = item.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(item.get("text"), str):
            parts.append(_text(item["text"]))
        elif kind == "image_url":
            image = item.get("image_url")
            parts.append(_image(image.get("url") if isinstance(image, dict) else image))
        elif kind == "input_image":
            parts.append(_image(item.get("image_url", "")))
        elif kind == "image" and isinstance(item.get("source"), dict):
            source = item["source"]
            if source.get("type") == "base64":
                parts.append(
                    _image(f"data:{source.get('media_type', '')};base64,{source.get('data', '')}")
                )
            else:
                parts.append(_text(str(source.get("url", "")), "image_url"))
        elif kind == "tool_use":
            parts.append(_text(_dump(item.get("input")), "tool_call", str(item.get("name", ""))))
        elif kind == "tool_result":
            result = item.get("content")
            parts.append(_text(_dump(result), "tool_result", str(item.get("tool_use_id", ""))))
        elif kind == "thinking" and isinstance(item.get("thinking"), str):
            parts.append(_text(item["thinking"], "other", "thinking"))
        else:
            parts.append(_text(_dump(item), "other", str(kind or "")))
    return parts


def _chat_message(message: dict[str, Any]) -> Message:
    role = str(message.get("role", "?"))
    out = Message(role, _parts(message.get("content")))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            function = call.get("function") or {}
            out.parts.append(
                _text(
                    _dump(function.get("arguments", "")),
                    "tool_call",
                    str(function.get("name", "")),
                )
            )
    if role == "tool":
        out.parts = [
            Part("tool_result", p.value, str(message.get("tool_call_id", ""))) for p in out.parts
        ]
    return out


def request_messages(body: Any) -> list[Message]:
    if not isinstance(body, dict):
        return []
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:  # Anthropic
        messages.append(Message("system", _parts(system)))
    instructions = body.get("instructions")
    if isinstance(instructions, str):  # OpenAI responses
        messages.append(Message("system", [_text(instructions)]))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            messages.append(_chat_message(message))
    items = body.get("input")
    if isinstance(items, str):
        messages.append(Message("user", [_text(items)]))
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and "role" in item:
                messages.append(_chat_message(item))
            elif isinstance(item, dict):
                messages.extend(_response_item(item))
    return messages


def _response_item(item: dict[str, Any]) -> list[Message]:
    kind = item.get("type")
    if kind == "message":
        return [Message(str(item.get("role", "assistant")), _parts(item.get("content")))]
    if kind == "function_call":
        part = _text(_dump(item.get("arguments", "")), "tool_call", str(item.get("name", "")))
        return [Message("assistant", [part])]
    if kind == "function_call_output":
        part = _text(_dump(item.get("output", "")), "tool_result", str(item.get("call_id", "")))
        return [Message("tool", [part])]
    return []


def response_messages(body: Any) -> list[Message]:
    if not isinstance(body, dict):
        return []
    messages: list[Message] = []
    for choice in body.get("choices") or []:  # OpenAI chat
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            messages.append(_chat_message(choice["message"]))
    if body.get("type") == "message" and "content" in body:  # Anthropic
        messages.append(Message(str(body.get("role", "assistant")), _parts(body["content"])))
    for item in body.get("output") or []:  # OpenAI responses
        if isinstance(item, dict):
            messages.extend(_response_item(item))
    return messages


def stream_messages(text: str) -> list[Message]:
    """The assistant's text put back together from a server-sent-events stream."""
    pieces: list[str] = []
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        for choice in event.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                pieces.append(delta["content"])
        delta = event.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("text"), str):  # Anthropic
            pieces.append(delta["text"])
        if event.get("type") == "response.output_text.delta" and isinstance(delta, str):
            pieces.append(delta)
    if not pieces:
        return []
    return [Message("assistant", [_text("".join(pieces))])]
