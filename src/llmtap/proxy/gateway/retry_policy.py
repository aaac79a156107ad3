"""What ``Helicone-Retry-*`` asks for, checked once per call, and the waits it implies.

``Helicone-Retry-Enabled: true`` switches retries on; ``-Num`` (5), ``-Factor`` (2),
``-Min-Timeout`` (1000 ms) and ``-Max-Timeout`` (10000 ms) shape them, as Helicone reads them.
The wait before retry *n* (1-based) is ``min(min_timeout * factor ** (n - 1), max_timeout)``; a
``Retry-After`` on the answer (seconds or an HTTP date) lengthens it, never past max timeout.
A value that is not a number, or outside the operator's bounds (``retry_max_num``,
``retry_max_timeout_ms``), is refused with a 400 naming the header: a silent clamp would hide a
typo that makes a call wait minutes, or never retry.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from llmtap.capture.tap import HeaderList

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers worth asking again: rate limited, or a provider-side failure that may pass."""
RETRY_ERRORS = frozenset(
    {"upstream_connect_error", "upstream_connect_timeout", "upstream_disconnected"}
)
"""Failures before any answer that a new attempt may not meet (the request may have been read:
the caller asked for retries, so a POST is sent again too)."""

MAX_FACTOR = 10.0


class GatewayHeaderError(Exception):
    """A feature header llmtap cannot honour: answered 400 (or ``status``) with ``code``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int
    """Retries after the first attempt (per target, with fallbacks)."""
    factor: float
    min_timeout_ms: float
    max_timeout_ms: float

    def wait_s(self, retry: int, retry_after_s: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        backoff = min(self.min_timeout_ms * self.factor ** (retry - 1), self.max_timeout_ms)
        if retry_after_s is not None:
            backoff = max(backoff, min(retry_after_s * 1000.0, self.max_timeout_ms))
        return backoff / 1000.0


def _number(features: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = features.get(name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise GatewayHeaderError(
            "invalid_retry_header",
            f"Helicone-{name.title()} must be a number from {low:g} to {high:g}, got {raw[:40]!r}",
        )
    return value


def parse_retry(features: dict[str, str], max_num: int, max_timeout_ms: int) -> RetryPolicy | None:
    """The retry policy a call asked for, or None when it did not switch retries on."""
    if features.get("retry-enabled", "").strip().lower() != "true":
        return None
    retries = _number(features, "retry-num", 5, 0, max_num)
    if retries != int(retries):
        raise GatewayHeaderError(
            "invalid_retry_header", f"Helicone-Retry-Num must be a whole number, got {retries:g}"
        )
    return RetryPolicy(
        retries=int(retries),
        factor=_number(features, "retry-factor", 2, 1, MAX_FACTOR),
        min_timeout_ms=_number(features, "retry-min-timeout", 1000, 0, max_timeout_ms),
        max_timeout_ms=_number(features, "retry-max-timeout", 10000, 0, max_timeout_ms),
    )


def retry_after_s(headers: HeaderList, now_unix_s: float | None = None) -> float | None:
    """A ``Retry-After`` as seconds from now (RFC 9110 10.2.3: delay-seconds or an HTTP date);
    None when absent or unreadable (a date in the past is 0)."""
    raw = None
    for name, value in headers:
        if name.lower() == b"retry-after":
            raw = value.decode("latin-1").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        now = time.time() if now_unix_s is None else now_unix_s
        return max(0.0, when.timestamp() - now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
