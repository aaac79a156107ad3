"""Whether a relayed stream had already reached its provider's final event.

The ``openai`` SDK stops reading at ``data: [DONE]`` and closes the response; a caller of the
Anthropic or Responses API may leave at ``message_stop`` or ``response.completed``. The
provider's end of the HTTP body (the chunked terminator) can still be on its way then, so the
client's close reaches the proxy first. Such a client has its whole answer: the call is
complete, not a disconnect (docs/decisions/2026-12-01-stream-end-before-terminator.md).

Asked once, when a client leaves before the response ended, never per chunk: it looks only at
the last bytes relayed (the capture's last parts, or the last piece once the capture is full).
"""

from __future__ import annotations

FINAL_EVENTS = frozenset(
    {
        b"message_stop",  # Anthropic Messages
        b"response.completed",  # OpenAI Responses
        b"response.incomplete",
        b"response.failed",
        b"response.done",  # OpenAI Realtime-style and some compatible servers
    }
)
"""Event names (``event:`` or the data's leading ``"type"``) after which a provider sends
nothing more."""
MAX_TAIL_BYTES = 1 << 20
"""The longest last event looked for (a Responses API ``response.completed`` holds the whole
response): a longer one is not recognised, and the call stays a disconnect, as before."""
_FIRST_LOOK = 4096
_TYPE_PREFIX = b'{"type":"'


def relayed_final_event(parts: list[bytes], whole: bool) -> bool:
    """``parts`` (the bytes relayed, in order; ``whole``: from the first byte of the body) end
    with a complete SSE event that ends a stream."""
    want = _FIRST_LOOK
    while True:
        taken, size = [], 0
        for part in reversed(parts):
            taken.append(part)
            size += len(part)
            if size >= want:
                break
        tail = b"".join(reversed(taken))
        starts_at_body = whole and len(taken) == len(parts)
        found = _final_event(tail, starts_at_body)
        if found is not None or starts_at_body or want >= MAX_TAIL_BYTES or size < want:
            return bool(found)
        want *= 4


def _final_event(tail: bytes, starts_at_body: bool) -> bool | None:
    """Whether the last event of ``tail`` is a final one; None when ``tail`` does not reach
    back to that event's start (look further)."""
    if b"\r" in tail:
        tail = tail.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not tail.endswith(b"\n\n"):
        return False  # the last event is not complete: the client cannot have read it
    body = tail.rstrip(b"\n")
    if _is_done(body[body.rfind(b"\n") + 1 :]):
        return True  # OpenAI's end is one line: no need to see where its event began
    cut = body.rfind(b"\n\n")
    if cut < 0 and not starts_at_body:
        return None
    name = b""
    for line in body[cut + 2 if cut >= 0 else 0 :].split(b"\n"):
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            if not name and value.startswith(_TYPE_PREFIX):
                name = value[len(_TYPE_PREFIX) : value.find(b'"', len(_TYPE_PREFIX))]
        elif field == b"event":
            name = value.strip()
    return name in FINAL_EVENTS


def _is_done(line: bytes) -> bool:
    field, _, value = line.partition(b":")
    return field == b"data" and value.strip() == b"[DONE]"
