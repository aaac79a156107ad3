"""Body references: what a record says about each body, and which bytes are to be stored.

A body the caller asked not to store (``Helicone-Omit-Request``/``-Response``) is described by its
size only, and its bytes go nowhere; any other body is described and handed on for the body
store. A reference gets its store key either at once (ingestion names each body) or once the
proxy's shipper has stored the batch's pack (``with_key``).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from llmtap.record import BodyRef


def body_ref(
    data: bytes,
    *,
    omit: bool,
    size: int | None = None,
    content_type: str | None = None,
    truncated: bool = False,
    key: str | None = None,
    keys: Callable[[bytes], str] | None = None,
) -> tuple[BodyRef, bytes | None]:
    """The reference for a body and the bytes to store (``None`` when omitted). ``size`` is the
    body's size as sent when ``data`` is only part of it or was inflated. ``keys``, when given,
    stores the bytes and returns their key (the proxy's pack of the batch)."""
    size = len(data) if size is None else size
    if omit:
        return BodyRef(omitted=True, size=size), None
    if keys is not None:
        key = keys(data)
    ref = BodyRef(key=key, size=size, content_type=content_type, truncated=truncated)
    return ref, data


def with_key(ref: BodyRef | None, key: str | None) -> BodyRef | None:
    """``ref`` pointing at ``key`` (unchanged without a reference or a key)."""
    return ref if ref is None or key is None else msgspec.structs.replace(ref, key=key)
