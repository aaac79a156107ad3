"""The body store port: request/response bytes, referenced from records by key.

Adapters: ``file://<dir>`` and ``s3://bucket?endpoint=...``; ``stores.factory.open_body_store``
picks one by URL. Keys are laid out by organization and request id (``body_key``).
"""

from __future__ import annotations

from typing import Protocol


def body_key(org_id: str | None, request_id: str, kind: str) -> str:
    """``<org>/<request id[:2]>/<request id>.<kind>``; kind is ``request`` or ``response``.

    One level of 256 fan-out directories per organization and no directory per call: the file
    store then creates a directory a few hundred times, not once per logged call.
    """
    return f"{org_id or '_unassigned'}/{request_id[:2]}/{request_id}.{kind}"


class BodyStream(Protocol):
    """A body being read in chunks (a file, an S3 object's response body)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class BodyStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under ``key`` (overwriting: replays write the same bytes)."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``KeyError`` when there are none."""

    def open_stream(self, key: str) -> BodyStream:
        """The bytes under ``key`` to read in chunks (big bodies); ``KeyError`` when none."""

    def close(self) -> None: ...
