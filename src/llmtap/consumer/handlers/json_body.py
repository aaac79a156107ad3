"""Reading a captured body as JSON without ever failing the record.

A body is what a client or a provider sent, so anything goes: bytes that are not UTF-8, JSON
nested deeper than the interpreter's stack (msgspec raises ``RecursionError``), a document cut
off at capture. Each ends as a short reason the row keeps (``stores.notes``), never as an
exception that would dead-letter an answered call.
"""

from __future__ import annotations

from typing import Any

import msgspec

INVALID_UTF8 = "invalid_utf8"
TOO_DEEP = "too_deep"
NOT_JSON = "not_json"
WRONG_SHAPE = "wrong_shape"

_decoder = msgspec.json.Decoder()


def read_json(data: bytes) -> tuple[Any, str | None]:
    """``(document, None)``, or ``(None, reason)`` when ``data`` is not readable JSON."""
    try:
        return _decoder.decode(data), None
    except UnicodeDecodeError:
        return None, INVALID_UTF8
    except RecursionError:
        return None, TOO_DEEP
    except msgspec.DecodeError:
        # only on failure: tell "not text at all" from "text, but not JSON"
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None, INVALID_UTF8
        return None, NOT_JSON
