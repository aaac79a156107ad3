"""Rate-limit policies: ``<quota>;w=<seconds>[;u=request|cents][;s=user|<property>]``.

The grammar is Helicone's (``Helicone-RateLimit-Policy``): a quota, a window of 60 seconds to a
year, a unit (requests, the default, or US cents of the calls' cost) and an optional segment (one
budget per ``Helicone-User-Id``, or per value of one ``Helicone-Property-*``). The same text is
what ``llmtap keys create --rate-limit`` stores with a key.

A policy this module cannot read is a ``PolicyError``. Calls sending one are not refused: like
Helicone, the gateway ignores a malformed header policy (the call goes through unlimited, the
log row and ``/_llmtap/metrics`` say why) — the caller could as well have sent no policy at all.
A key's policy is checked when the key is created, so it cannot be malformed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

MIN_WINDOW_S = 60
MAX_WINDOW_S = 365 * 24 * 3600
MAX_QUOTA = 1_000_000_000
"""Requests, or cents ($10M): with counts kept in millionths of a cent, well inside the 2**53
a Lua number (Redis) holds exactly."""
MAX_POLICY_CHARS = 256
CENT_UNITS = 1_000_000
"""What the stores count for one cent: cents are kept in millionths (10 nano-dollars), so a call
costing a fraction of a cent is charged what it cost."""

_DIGITS = re.compile(r"[0-9]{1,12}")
_PROPERTY = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")

Unit = Literal["request", "cents"]


class PolicyError(ValueError):
    """The policy text is not ``<quota>;w=<seconds>[;u=…][;s=…]`` within the bounds."""


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    quota: int
    window_s: int
    unit: Unit = "request"
    segment: str | None = None
    """None: one budget for the whole scope; ``user``; else a property name (lower case)."""

    @property
    def limit_units(self) -> int:
        """The quota as the stores count it (requests, or millionths of a cent)."""
        return self.quota * CENT_UNITS if self.unit == "cents" else self.quota

    def text(self) -> str:
        """The canonical spelling, sent back in ``Helicone-RateLimit-Policy``."""
        out = f"{self.quota};w={self.window_s};u={self.unit}"
        return out if self.segment is None else f"{out};s={self.segment}"


def _number(text: str, what: str, low: int, high: int) -> int:
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        raise PolicyError(f"{what} must be a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise PolicyError(f"{what} must be from {low} to {high}")
    return value


@functools.lru_cache(maxsize=1024)
def parse_policy(text: str) -> RateLimitPolicy:
    """The policy ``text`` states; ``PolicyError`` (with a message safe to show) otherwise.

    Cached: a key's policy, or a client's header, is read once per distinct text."""
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyError(f"longer than {MAX_POLICY_CHARS} characters")
    head, *params = text.split(";")
    quota = _number(head, "the quota", 1, MAX_QUOTA)
    seen: dict[str, str] = {}
    for param in params:
        name, eq, value = param.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq or name not in ("w", "u", "s"):
            raise PolicyError("parameters are w=<seconds>, u=request|cents, s=user|<property>")
        if name in seen:
            raise PolicyError(f"{name}= given twice")
        seen[name] = value
    if "w" not in seen:
        raise PolicyError("w=<seconds> is required")
    window = _number(seen["w"], "the window w", MIN_WINDOW_S, MAX_WINDOW_S)
    unit = seen.get("u", "request").lower()
    if unit not in ("request", "cents"):
        raise PolicyError("u must be request or cents")
    segment = seen.get("s")
    if segment is not None:
        segment = segment.lower()
        if not _PROPERTY.fullmatch(segment):
            raise PolicyError("s must be user or a property name (letters, digits, _ . -)")
    return RateLimitPolicy(quota, window, "cents" if unit == "cents" else "request", segment)
