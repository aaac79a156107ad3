"""The response body of an async log, as bytes the consumer's parsers read.

``HeliconeLogBuilder`` sends a streamed answer as its chunks' JSON joined by newlines
(``textBody``), not as the provider's event stream. Such a body is stored as the event stream the
chunks came from (``data: <chunk>`` events), so usage and time to first token are read the same
way as for a proxied stream; ``extra["response_body"] = "ndjson-as-sse"`` says so.
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmtap.ingest.values import decode_nested

_json = msgspec.json.Decoder()


def _is_json(text: str) -> bool:
    try:
        decode_nested(lambda: _json.decode(text), "providerResponse.textBody")
    except msgspec.DecodeError:
        return False
    return True


def _ndjson_as_sse(text: str) -> bytes | None:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith("{"):
            return None
        if not _is_json(stripped):
            return None
    events = "".join(f"data: {line.strip()}\n\n" for line in lines)
    return (events + "data: [DONE]\n\n").encode()


def _looks_like_sse(text: str) -> bool:
    head = text.lstrip()[:16]
    return head.startswith(("data:", "event:", ":"))


def response_body(
    text_body: str | None,
    json_body: dict[str, Any] | list[Any] | None,
    encoder: msgspec.json.Encoder,
) -> tuple[bytes | None, str | None, str | None]:
    """``(bytes, content type, how it was reformatted)``; ``textBody`` wins when not empty."""
    if text_body:
        if _looks_like_sse(text_body):
            return text_body.encode(), "text/event-stream", None
        sse = _ndjson_as_sse(text_body)
        if sse is not None:
            return sse, "text/event-stream", "ndjson-as-sse"
        stripped = text_body.strip()
        if stripped.startswith(("{", "[")) and _is_json(stripped):
            return text_body.encode(), "application/json", None
        return text_body.encode(), "text/plain; charset=utf-8", None
    if json_body is None:
        return None, None, None
    return encoder.encode(json_body), "application/json", None
