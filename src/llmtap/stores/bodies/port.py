"""The body store port: request/response bytes, referenced from records by key.

Adapters: ``file://<dir>`` and ``s3://bucket?endpoint=...``; ``stores.factory.open_body_store``
picks one by URL.

Two kinds of key, both laid out by organization:

* ``body_key``: one object per body (``<org>/<id[:2]>/<id>.<kind>``), for low-volume writers;
* a *slice* of a pack: ``<org>/packs/<pp>/<pack id>.pack#<offset>+<length>``. The proxy's
  shipper writes all bodies of one batch and organization as one pack object (``PackBuilder``),
  because creating a file or an S3 object per body was its bottleneck
  (docs/decisions/2026-11-25-body-packs.md). ``get`` and ``open_stream`` read a slice as if it
  were its own object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

PACK_SUFFIX = ".pack"


def body_key(org_id: str | None, request_id: str, kind: str) -> str:
    """``<org>/<request id[:2]>/<request id>.<kind>``; kind is ``request`` or ``response``.

    One level of 256 fan-out directories per organization and no directory per call: the file
    store then creates a directory a few hundred times, not once per logged call.
    """
    return f"{org_id or '_unassigned'}/{request_id[:2]}/{request_id}.{kind}"


def pack_key(org_id: str | None, pack_id: str) -> str:
    """Where one pack object lives: ``<org>/packs/<pack id[:2]>/<pack id>.pack``."""
    return f"{org_id or '_unassigned'}/packs/{pack_id[:2]}/{pack_id}{PACK_SUFFIX}"


class PackBuilder:
    """One pack object being filled: ``add`` appends a body and returns its key at once (the
    proxy's records carry their keys from the start); ``blob`` is the object to ``put``."""

    __slots__ = ("_parts", "_size", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, body: bytes) -> str:
        key = f"{self.key}#{self._size}+{len(body)}"
        self._parts.append(body)
        self._size += len(body)
        return key

    def __len__(self) -> int:
        return len(self._parts)

    def blob(self) -> bytes:
        return b"".join(self._parts)


def pack_bodies(pack: str, bodies: Sequence[bytes]) -> tuple[bytes, list[str]]:
    """The pack object's bytes and, in order, the key of each body inside it."""
    builder = PackBuilder(pack)
    keys = [builder.add(body) for body in bodies]
    return builder.blob(), keys


def split_key(key: str) -> tuple[str, int | None, int | None]:
    """(object key, offset, length); offset and length are None for a whole-object key."""
    name, sep, where = key.rpartition("#")
    if not sep or not name.endswith(PACK_SUFFIX):
        return key, None, None
    offset, plus, length = where.partition("+")
    if not plus or not offset.isdigit() or not length.isdigit():
        raise KeyError(key)
    return name, int(offset), int(length)


class BodyStream(Protocol):
    """A body being read in chunks (a file, an S3 object's response body)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class BodyStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under ``key`` (overwriting: replays write the same bytes)."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key`` (an object or a pack slice); ``KeyError`` when there are none."""

    def open_stream(self, key: str) -> BodyStream:
        """The bytes under ``key`` (an object or a pack slice) to read in chunks; ``KeyError``
        when there are none."""

    def close(self) -> None: ...
