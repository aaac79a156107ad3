"""The mock upstream's request and reply values, shared by the endpoint modules and the server."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

JSON = b"application/json"
EVENT_STREAM = b"text/event-stream; charset=utf-8"

encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as the mock received it."""

    method: str
    path: str
    """The request target without its query string."""
    query: str
    headers: dict[str, str]
    """Lower-cased names; repeated headers are joined with ``", "``."""
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass(slots=True)
class Reply:
    """A response, fully decided before anything is written.

    Either ``body`` (sent with Content-Length) or ``frames`` (SSE events, each sent as one chunk
    of a chunked body). ``frames[content_start:content_end]`` are the content deltas: the chunk
    delay is slept before each of them and ``drop_after`` counts them.
    """

    status: int
    content_type: bytes = JSON
    body: bytes = b""
    frames: list[bytes] | None = None
    content_start: int = 0
    content_end: int = 0
    headers: bytes = b""
    """Extra header lines, each ending in CRLF."""
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    drop_after: int | None = None
    exact: bool = False
    """``headers`` are all the headers: no content type or cache-control is added (canned)."""
    hold: bool = False
    """A chunked body is never ended: the connection stays open after the last frame."""
    hang_up: bool = False
    """Nothing is written: the connection is closed instead of answering (a provider that
    drops the call before its response head)."""

    @property
    def immediate(self) -> bool:
        """Can be written at once, without waiting on the loop."""
        return self.latency_s <= 0.0 and (self.frames is None or self.chunk_delay_s <= 0.0)


class Ids:
    """Provider-looking ids, unique per server (a random prefix and a counter)."""

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._count = 0

    def next(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._prefix}{self._count:012x}"


def now() -> int:
    return int(time.time())


@dataclass
class RequestLog:
    """The last ``capacity`` requests, safe to read from another thread."""

    capacity: int = 1000
    _items: deque[ReceivedRequest] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    _total: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._items = deque(maxlen=self.capacity)

    def add(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._items.append(request)
            self._total += 1

    @property
    def total(self) -> int:
        """Requests received since the start (or the last ``clear``), however many were kept."""
        with self._lock:
            return self._total

    def snapshot(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0
