"""Per-request behaviour of the mock upstream, read from ``x-mock-*`` request headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_CHUNKS = 8
"""Words (content chunks) in a reply when ``x-mock-chunks`` is not sent."""

_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class Knobs:
    status: int | None = None
    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    chunks: int = DEFAULT_CHUNKS
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    usage_in_last_content_chunk: bool = False
    no_usage: bool = False
    drop_after_chunks: int | None = None
    fail_first: int = 0
    fail_key: str = ""
    fail_status: int = 500
    retry_after: str | None = None


MAX_FAIL_KEYS = 10_000
"""Keys whose failures the mock counts at once (``x-mock-fail-key``); past it the oldest go."""


class KnobError(ValueError):
    """An ``x-mock-*`` header whose value cannot be used; answered with a 400."""


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise KnobError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise KnobError(f"{name} must not be negative, got {raw!r}")
    return value


def _integer(headers: Mapping[str, str], name: str) -> int | None:
    value = _number(headers, name)
    return None if value is None else int(value)


def parse_knobs(
    headers: Mapping[str, str], latency_ms: float = 0.0, chunk_delay_ms: float = 0.0
) -> Knobs:
    """Knobs for one request; ``latency_ms``/``chunk_delay_ms`` are the server-wide defaults.

    ``headers`` must have lower-cased names. Requests without any ``x-mock-`` header (the
    benchmark case) take a shortcut that reads nothing else.
    """
    if not any(name.startswith("x-mock-") for name in headers):
        if latency_ms == 0.0 and chunk_delay_ms == 0.0:
            return _PLAIN
        return Knobs(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms)
    status = _integer(headers, "x-mock-status")
    if status is not None and not 100 <= status <= 599:
        raise KnobError(f"x-mock-status must be an HTTP status, got {status}")
    latency = _number(headers, "x-mock-latency-ms")
    delay = _number(headers, "x-mock-chunk-delay-ms")
    chunks = _integer(headers, "x-mock-chunks")
    fail_status = _integer(headers, "x-mock-fail-status")
    if fail_status is not None and fail_status != 0 and not 100 <= fail_status <= 599:
        raise KnobError(f"x-mock-fail-status must be 0 or an HTTP status, got {fail_status}")
    retry_after = headers.get("x-mock-retry-after")
    if retry_after is not None and ("\r" in retry_after or "\n" in retry_after):
        raise KnobError("x-mock-retry-after must be one header line")
    return Knobs(
        status=status,
        latency_ms=latency_ms if latency is None else latency,
        chunk_delay_ms=chunk_delay_ms if delay is None else delay,
        chunks=DEFAULT_CHUNKS if chunks is None else chunks,
        cached_tokens=_integer(headers, "x-mock-cached-tokens") or 0,
        cache_creation_tokens=_integer(headers, "x-mock-cache-creation-tokens") or 0,
        reasoning_tokens=_integer(headers, "x-mock-reasoning-tokens") or 0,
        usage_in_last_content_chunk=headers.get("x-mock-usage-in-last-content-chunk", "").lower()
        in _TRUE,
        no_usage=headers.get("x-mock-no-usage", "").lower() in _TRUE,
        drop_after_chunks=_integer(headers, "x-mock-drop-after-chunks"),
        fail_first=_integer(headers, "x-mock-fail-first") or 0,
        fail_key=headers.get("x-mock-fail-key", ""),
        fail_status=500 if fail_status is None else fail_status,
        retry_after=retry_after,
    )


_PLAIN = Knobs()
