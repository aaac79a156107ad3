"""Server-sent-event and HTTP/1.1 chunked framing, as bytes ready for the socket."""

from __future__ import annotations

SSE_DONE = b"data: [DONE]\n\n"
"""OpenAI chat completions end their stream with this sentinel."""

CHUNKED_END = b"0\r\n\r\n"


def sse_data(payload: bytes) -> bytes:
    """An unnamed event (OpenAI chat completions)."""
    return b"data: " + payload + b"\n\n"


def sse_event(name: bytes, payload: bytes) -> bytes:
    """A named event (OpenAI Responses, Anthropic Messages)."""
    return b"event: " + name + b"\ndata: " + payload + b"\n\n"


def chunk(frame: bytes) -> bytes:
    """One frame of a ``Transfer-Encoding: chunked`` body."""
    return b"%x\r\n%b\r\n" % (len(frame), frame)
