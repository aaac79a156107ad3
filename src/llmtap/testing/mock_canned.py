"""Canned replies: a test queues exact response bytes, the next matching request gets them.

This is how recorded provider responses (the wire-format corpus) are replayed: the status, the
headers and the body bytes go out as given, with only the framing added (``content-length``, or
``transfer-encoding: chunked`` for event streams). A canned reply skips the mock's auth checks and
knobs: whatever was queued is what the provider "said".

An event stream is sent one chunk per event (split after each blank line, whatever the line
ends), so a proxy in between sees it arrive the way a provider streams it; the bytes themselves
are untouched: CRLF, comments and a cut-off tail included. ``ending`` says how the body ends:

``complete``
    normally (the chunked terminator, or all ``content-length`` bytes);
``drop``
    the connection is closed right after the bytes, without the chunked terminator (the provider
    dropped the stream);
``hold``
    the connection stays open after the bytes and the body never ends (a stream still running
    when the client goes away).
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from llmtap.testing.mock_http import Reply

Ending = Literal["complete", "drop", "hold"]

# framing is the server's: a queued header naming it would contradict what is sent
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
# after an event's blank line: LF LF, CRLF CRLF or CR CR
_EVENT_END = re.compile(rb"(?<=\n\n)|(?<=\r\n\r\n)|(?<=\r\r)")


def event_frames(body: bytes) -> list[bytes]:
    """``body`` split after each event's blank line; the pieces join back to ``body``."""
    return [piece for piece in _EVENT_END.split(body) if piece]


@dataclass(frozen=True, slots=True)
class CannedReply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    path: str | None
    chunked: bool
    ending: Ending

    def matches(self, path: str) -> bool:
        return self.path is None or self.path == path

    def reply(self) -> Reply:
        head = b"".join(
            b"%b: %b\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers
            if name.lower() not in _FRAMING
        )
        if not self.chunked:
            return Reply(status=self.status, body=self.body, headers=head, exact=True)
        frames = event_frames(self.body)
        return Reply(
            status=self.status,
            frames=frames,
            content_start=0,
            content_end=len(frames),
            headers=head,
            exact=True,
            # "drop after every frame" is the existing way to close without the terminator
            drop_after=len(frames) if self.ending == "drop" else None,
            hold=self.ending == "hold",
        )


def canned_reply(
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    path: str | None = None,
    chunked: bool | None = None,
    ending: Ending = "complete",
) -> CannedReply:
    """Check and freeze one canned reply; ``chunked`` defaults to "is it an event stream"."""
    pairs = tuple(headers)
    if chunked is None:
        chunked = any(
            name.lower() == "content-type" and value.lower().startswith("text/event-stream")
            for name, value in pairs
        )
    if ending != "complete" and not chunked:
        raise ValueError(f"ending={ending!r} needs a chunked body (content-length says the end)")
    return CannedReply(status, pairs, body, path, chunked, ending)


class CannedReplies:
    """Replies queued by a test (any thread), taken in order by the server's loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[CannedReply] = deque()

    def add(self, reply: CannedReply) -> None:
        with self._lock:
            self._queue.append(reply)

    def take(self, path: str) -> CannedReply | None:
        """The first queued reply matching ``path``, removed from the queue."""
        with self._lock:
            for index, reply in enumerate(self._queue):
                if reply.matches(path):
                    del self._queue[index]
                    return reply
        return None

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
