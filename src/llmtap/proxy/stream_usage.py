"""Usage for streamed OpenAI chat calls, invisible to the client.

OpenAI only reports usage in a stream when the request sets ``stream_options.include_usage``. When
the caller did not set it (and did not opt out), llmtap adds it, and ``UsageChunkFilter`` gives the
client back the stream it would have had without it: the extra final chunk (``"choices": []`` plus
``usage``) is removed and the ``"usage": null`` that every other chunk then carries is dropped. The
captured copy keeps everything, so the consumer sees the provider's own numbers.

Only events that carry ``"usage"`` are touched; the rest are forwarded as they arrived, one write
per complete SSE event (an event split across TCP reads waits for its end, never longer).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_EVENT_END = re.compile(rb"(\r?\n\r?\n)")
_NULL_USAGE = b',"usage":null}'
_NULL_USAGE_END = _NULL_USAGE + b"\n\n"


def inject_include_usage(body: bytes) -> bytes | None:
    """The request body with ``stream_options.include_usage = true``, or None to leave it alone.

    Left alone: not a streamed call, not a JSON object, or the caller set ``include_usage``
    itself (true: it wants the chunk; false: it opted out).
    """
    if b'"stream"' not in body:
        return None
    try:
        payload = _decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(payload, dict) or payload.get("stream") is not True:
        return None
    options = payload.get("stream_options")
    if options is None:
        payload["stream_options"] = {"include_usage": True}
    elif isinstance(options, dict) and "include_usage" not in options:
        options["include_usage"] = True
    else:
        return None
    return _encoder.encode(payload)


class UsageChunkFilter:
    """Removes what ``include_usage`` added from an SSE byte stream, event by event."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """Bytes to send to the client now (complete events only)."""
        buf = self._pending + data if self._pending else data
        if buf.endswith(b"\n\n"):  # nearly always: whole events, nothing left over
            complete, self._pending = buf, b""
        else:
            lf, crlf = buf.rfind(b"\n\n"), buf.rfind(b"\r\n\r\n")
            cut = max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)
            if cut < 0:
                self._pending = buf
                return b""
            complete, self._pending = buf[:cut], buf[cut:]
        if b'"usage"' not in complete:
            return complete
        if (
            complete.endswith(_NULL_USAGE_END)
            and complete.startswith(b"data: {")
            and complete.count(b"\n") == 2
            and complete.count(b'"usage"') == 1
        ):
            # Fast path, what nearly every piece of an OpenAI stream is: one event, one data
            # line, OpenAI's compact encoding ending in the usage llmtap asked for (null).
            # The same bytes as the general path below, without splitting anything.
            return complete[: -len(_NULL_USAGE_END)] + b"}\n\n"
        if b"\r" not in complete:
            # LF-separated events (a burst, a replayed stream): split as the regex would, each
            # event through the same fast check
            events = complete.split(b"\n\n")  # [event, event, ..., b""]
            return b"".join([_clean_lf_event(event) for event in events[:-1]])
        parts = _EVENT_END.split(complete)  # [event, separator, event, separator, ..., b""]
        return b"".join(_clean_event(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2))

    def finish(self) -> bytes:
        """Whatever is left when the stream ends (an unterminated last event, as it came)."""
        rest, self._pending = self._pending, b""
        return rest


def _clean_lf_event(event: bytes) -> bytes:
    """``_clean_event(event, b"\\n\\n")``, with the single-line null-usage case cut directly."""
    if b'"usage"' not in event:
        return event + b"\n\n"
    if (
        event.endswith(_NULL_USAGE)
        and event.startswith(b"data: {")
        and b"\n" not in event
        and event.count(b'"usage"') == 1
    ):
        return event[: -len(_NULL_USAGE)] + b"}\n\n"
    return _clean_event(event, b"\n\n")


def _clean_event(event: bytes, separator: bytes) -> bytes:
    if b'"usage"' not in event:
        return event + separator
    lines = event.split(b"\n")
    out: list[bytes] = []
    for line in lines:
        if line.startswith(b"data:") and b'"usage"' in line:
            cr = b"\r" if line.endswith(b"\r") else b""
            cleaned = _clean_data(line[5:].strip(b" \r"))
            if cleaned is None:
                return b""  # the usage-only chunk llmtap asked for: the client never sees it
            out.append(b"data: " + cleaned + cr)
        else:
            out.append(line)
    return b"\n".join(out) + separator


def _clean_data(data: bytes) -> bytes | None:
    # Fast path for OpenAI's own compact encoding.
    if data.endswith(b',"usage":null}') and data.count(b'"usage"') == 1:
        return data[:-14] + b"}"
    try:
        chunk: Any = _decoder.decode(data)
    except msgspec.DecodeError:
        return data
    if not isinstance(chunk, dict) or "usage" not in chunk:
        return data
    if chunk["usage"] is not None and not chunk.get("choices"):
        return None
    del chunk["usage"]
    return _encoder.encode(chunk)
