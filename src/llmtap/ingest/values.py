"""Values from a log body that Python refuses in ways a caller must hear about as a 400.

``str.isdigit`` is true for ``"²"`` which ``int`` refuses; ``int`` refuses strings past 4300
digits; a count past 2^63 does not fit a row; ``urlsplit`` refuses ``http://[::1``; and JSON
nested past the interpreter's recursion limit raises ``RecursionError`` in the decoder. Each
becomes a ``BadLog`` naming where the value was, never the interpreter's own message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from llmtap.capture.redaction import redact_url
from llmtap.ingest.errors import BadLog

T = TypeVar("T")
MAX_COUNT = 2**63 - 1
"""The largest whole number a row holds (a signed 64-bit column)."""
_MAX_DIGITS = len(str(MAX_COUNT))


def too_deep(where: str) -> BadLog:
    return BadLog(f"invalid log: {where} is JSON nested too deeply")


def decode_nested(decode: Callable[[], T], where: str) -> T:
    """``decode()``, with JSON nested past the recursion limit as a ``BadLog`` naming ``where``."""
    try:
        return decode()
    except RecursionError:
        raise too_deep(where) from None


def digits(text: str, where: str) -> int | None:
    """The number a string of decimal digits spells; ``None`` when ``text`` is not digits at all
    (a word is not a number, as before); ``BadLog`` for digits ``int`` refuses or past 2^63."""
    if not text.isdigit():
        return None
    if not text.isascii() or len(text) > _MAX_DIGITS or int(text) > MAX_COUNT:
        raise BadLog(f"invalid log: {where} is not a whole number below 2^63")
    return int(text)


def whole(value: float, where: str) -> int | None:
    """A float that is a whole, non-negative number as an int; ``BadLog`` past 2^63."""
    if not value.is_integer() or value < 0:  # inf and nan are not integers
        return None
    if value > MAX_COUNT:
        raise BadLog(f"invalid log: {where} is not a whole number below 2^63")
    return int(value)


def checked_url(url: str, where: str) -> str:
    """``url`` with its secrets redacted, once ``urlsplit`` can read it (host and port too)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number in 0..65535 is refused only here
    except ValueError:
        raise BadLog(f"invalid log: {where} is not a valid URL") from None
    return redact_url(url)
