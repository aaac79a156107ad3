"""A tolerant parser for a captured Server-Sent Events byte stream.

It follows the WHATWG event-stream rules (LF, CRLF or CR line ends; ``:`` comments; ``field:
value`` with one optional space; several ``data`` lines joined by ``\\n``; a blank line dispatches)
with one deliberate difference: a stream that was cut off (client gone, upstream dropped,
capture truncated) keeps its last, unterminated event, marked ``complete=False``. Callers decode
its data and simply fail on a half-written JSON document, which is never valid.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_LINE_END = re.compile(r"\r\n|\r|\n")


class SseEvent(NamedTuple):
    """One event (a tuple: a stream has one per token, and a frozen dataclass took twice as long
    to make)."""

    event: str
    """The ``event:`` field, or ``"message"`` when the event named none."""
    data: str
    complete: bool = True


def looks_like_sse(body: bytes) -> bool:
    """The body starts the way an event stream does (after optional BOM and blank lines)."""
    head = body[:64].lstrip(b"\xef\xbb\xbf").lstrip()
    return head.startswith((b"data:", b"event:", b":", b"id:", b"retry:"))


def parse_sse(body: bytes) -> list[SseEvent]:
    """Every event in ``body``; events without any ``data`` line are dropped, as browsers do."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    # Decoded once, not per event: a multi-byte character split by a cut-off capture must not
    # make the whole body unreadable, and the event boundaries are ASCII, so one decode of the
    # whole body gives each event the text its own decode would.
    text = body.decode("utf-8", errors="replace")
    if "\r" in text:
        return _parse_lines(text)
    # Fast path for LF-only streams (nearly all): one split per event instead of per line, and
    # the common one-line "data: {...}" event taken as it is.
    blocks = text.split("\n\n")
    tail = blocks.pop()  # after the last blank line: "" unless the stream was cut off
    events: list[SseEvent] = []
    for block in blocks:
        if block.startswith("data: ") and "\n" not in block:
            events.append(SseEvent("message", block[6:]))
        elif block:
            events.extend(_parse_lines(block + "\n\n"))
    if tail.strip("\n"):
        events.extend(
            SseEvent(e.event, e.data, complete=False) for e in _parse_lines(tail.rstrip("\n"))
        )
    return events


def _parse_lines(text: str) -> list[SseEvent]:
    lines = _LINE_END.split(text)
    # The text after the last line end is an unterminated line: it belongs to a cut-off event.
    terminated = len(lines) - 1
    events: list[SseEvent] = []
    name = ""
    data: list[str] = []
    for index, line in enumerate(lines):
        if not line:
            if index < terminated:
                if data:
                    events.append(SseEvent(name or "message", "\n".join(data)))
                name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        # id and retry do not matter for a captured stream; unknown fields are ignored by spec
    if data:
        events.append(SseEvent(name or "message", "\n".join(data), complete=False))
    return events
