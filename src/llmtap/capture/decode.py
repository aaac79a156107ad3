"""Compressed bodies inflated within a cap: the one place llmtap reads ``Content-Encoding``.

A few kilobytes of gzip can inflate to gigabytes, so nothing is ever inflated without a limit:
the caller says how many bytes it will take and learns whether there were more. The proxy keeps
a captured response as sent when it does not inflate completely within ``max_capture_bytes``;
the ingestion endpoints answer 413 past ``max_ingest_body_bytes``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

COMPRESSED = frozenset({"gzip", "x-gzip", "deflate"})
"""The ``Content-Encoding`` names llmtap inflates (``identity`` and none need nothing)."""
# wbits 47: a gzip or a zlib header, told apart by the first bytes
_GZIP_OR_ZLIB = 47
_RAW_DEFLATE = -15


@dataclass(frozen=True, slots=True)
class Inflated:
    data: bytes
    """At most ``limit`` bytes of the inflated body."""
    complete: bool
    """The compressed stream ended (it was not cut off) and nothing followed it."""
    over_limit: bool
    """Inflating went past ``limit``: ``data`` is only the first ``limit`` bytes."""


def encoding_name(value: str | bytes | None) -> str:
    """A ``Content-Encoding`` value as a lower-case name (``""`` when there is none)."""
    if value is None:
        return ""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text.strip().lower()


def inflate(data: bytes, limit: int, *, raw_deflate: bool = False) -> Inflated | None:
    """``data`` (gzip, or zlib-wrapped deflate; bare deflate too when ``raw_deflate``) inflated
    to at most ``limit`` bytes; ``None`` when it is none of these. Concatenated gzip members are
    read one after another, like ``gzip.decompress``; a stream cut off yields what it held."""
    for wbits in (_GZIP_OR_ZLIB, _RAW_DEFLATE) if raw_deflate else (_GZIP_OR_ZLIB,):
        try:
            return _inflate(data, limit, wbits)
        except zlib.error:
            continue
    return None


def _inflate(data: bytes, limit: int, wbits: int) -> Inflated:
    """Raises ``zlib.error`` when the first stream is not ``wbits``' format."""
    parts: list[bytes] = []
    room = limit + 1
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(rest, room)
        except zlib.error:
            if not parts:
                raise
            return Inflated(b"".join(parts), complete=False, over_limit=False)
        parts.append(out)
        room -= len(out)
        if room <= 0:
            return Inflated(b"".join(parts)[:limit], complete=False, over_limit=True)
        rest = inflater.unused_data
        if not inflater.eof or not rest:
            return Inflated(b"".join(parts), complete=inflater.eof, over_limit=False)
        if wbits == _RAW_DEFLATE or not rest.startswith(b"\x1f\x8b"):
            # bytes after the end of the stream that are not another gzip member
            return Inflated(b"".join(parts), complete=False, over_limit=False)
