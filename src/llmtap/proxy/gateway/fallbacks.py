"""``Helicone-Fallbacks``: the targets a call is tried on in order, checked once per call.

The header is a JSON array, as Helicone reads it::

    [{"target-url": "https://api.openai.com", "headers": {"authorization": "Bearer sk-..."},
      "onCodes": [429, {"from": 500, "to": 599}], "bodyKeyOverride": {"model": "gpt-4o-mini"}},
     ...]

Entry 0 is tried first; when its answer's status is in its ``onCodes`` (or it cannot be reached),
the next one is tried; the last one's answer is the call's whatever it is. ``target-url`` is a
base URL: the call's path (as routed, without the route's own base path) is appended to it.
``headers`` replace the call's headers of the same name; ``bodyKeyOverride`` is merged into the
JSON body (objects key by key, anything else replaced). Every target passes the router's
no-open-relay check here, before any attempt (a known provider or ``allowed_target_hosts``), and
the pool's private-address guard when it connects: a fallback is no way around either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from llmtap.capture.tap import HOP_BY_HOP
from llmtap.proxy.gateway.retry_policy import GatewayHeaderError
from llmtap.proxy.routing import RouteError, Router, Upstream

MAX_ON_CODES = 100
MAX_HEADERS = 64
MAX_OVERRIDE_DEPTH = 32
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# framing and routing are the proxy's; llmtap's own headers are never forwarded
_FORBIDDEN = HOP_BY_HOP | {b"host", b"content-length"}
_OURS = (b"helicone-", b"llmtap-")


@dataclass(frozen=True, slots=True)
class Fallback:
    upstream: Upstream
    headers: tuple[tuple[bytes, bytes], ...]
    on_codes: tuple[tuple[int, int], ...]
    """Inclusive status ranges (a single code is ``(c, c)``)."""
    body_override: dict[str, Any] | None

    def falls_on(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.on_codes)


def _refuse(index: int, message: str) -> GatewayHeaderError:
    return GatewayHeaderError("invalid_fallbacks", f"Helicone-Fallbacks[{index}]: {message}")


def _status(value: Any) -> bool:
    return type(value) is int and 100 <= value <= 599


def _on_codes(index: int, raw: Any) -> tuple[tuple[int, int], ...]:
    if not isinstance(raw, list) or len(raw) > MAX_ON_CODES:
        raise _refuse(index, f"onCodes must be an array of at most {MAX_ON_CODES} items")
    codes = []
    for item in raw:
        if _status(item):
            codes.append((item, item))
        elif isinstance(item, dict) and _status(item.get("from")) and _status(item.get("to")):
            codes.append((item["from"], item["to"]))
        else:
            raise _refuse(index, 'each onCodes item is a status or {"from": s, "to": s}')
    return tuple(codes)


def _headers(index: int, raw: Any) -> tuple[tuple[bytes, bytes], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or len(raw) > MAX_HEADERS:
        raise _refuse(index, f"headers must be an object of at most {MAX_HEADERS} strings")
    out = []
    for name, value in raw.items():
        if not isinstance(value, str):
            raise _refuse(index, "each header value must be a string")
        try:
            bname, bvalue = name.encode("latin-1"), value.strip().encode("latin-1")
        except UnicodeEncodeError:
            raise _refuse(index, "header names and values must be latin-1 text") from None
        lower = bname.lower()
        if not _TOKEN.match(bname) or _BAD_VALUE.search(bvalue):
            raise _refuse(index, "a header name or value has characters HTTP does not allow")
        if lower in _FORBIDDEN or lower.startswith(_OURS) or lower.startswith(b"proxy-"):
            raise _refuse(index, f"header {name!r} is set by the proxy, not by a fallback")
        out.append((lower, bvalue))
    return tuple(out)


def _depth(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` objects/arrays."""
    if limit < 0:
        return True
    if isinstance(value, dict):
        return any(_depth(v, limit - 1) for v in value.values())
    if isinstance(value, list):
        return any(_depth(v, limit - 1) for v in value)
    return False


def parse_fallbacks(raw: str, router: Router, max_targets: int) -> list[Fallback]:
    """The targets of a ``Helicone-Fallbacks`` header, or a ``GatewayHeaderError`` (400) /
    the router's refusal (403 ``target_not_allowed``) naming the entry."""
    try:
        # the header is bounded by the request head limit; msgspec stops deep nesting itself
        entries = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise GatewayHeaderError(
            "invalid_fallbacks", "Helicone-Fallbacks must be a JSON array of targets"
        ) from None
    if not isinstance(entries, list) or not entries:
        raise GatewayHeaderError(
            "invalid_fallbacks", "Helicone-Fallbacks must be a non-empty JSON array of targets"
        )
    if len(entries) > max_targets:
        raise GatewayHeaderError(
            "invalid_fallbacks",
            f"Helicone-Fallbacks names {len(entries)} targets; at most {max_targets} are allowed "
            "(LLMTAP_FALLBACKS_MAX_TARGETS)",
        )
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _refuse(index, "each target must be a JSON object")
        url = entry.get("target-url")
        if not isinstance(url, str) or not url:
            raise _refuse(index, '"target-url" (a string) is required')
        if "onCodes" not in entry:
            raise _refuse(index, '"onCodes" is required')
        override = entry.get("bodyKeyOverride")
        if override is not None and (
            not isinstance(override, dict) or _depth(override, MAX_OVERRIDE_DEPTH)
        ):
            raise _refuse(
                index, f"bodyKeyOverride must be an object nested at most {MAX_OVERRIDE_DEPTH} deep"
            )
        try:
            upstream = router.target(url)
        except RouteError as exc:
            raise GatewayHeaderError(
                exc.code, f"Helicone-Fallbacks[{index}]: {exc.message}", exc.status
            ) from None
        out.append(
            Fallback(
                upstream=upstream,
                headers=_headers(index, entry.get("headers")),
                on_codes=_on_codes(index, entry["onCodes"]),
                body_override=override or None,
            )
        )
    return out


def merged(body: Any, override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``body``: objects key by key, anything else replaced."""
    out = dict(body) if isinstance(body, dict) else {}
    for key, value in override.items():
        if isinstance(value, dict):
            out[key] = merged(out.get(key), value)
        else:
            out[key] = value
    return out


def json_object(body: bytes) -> dict[str, Any] | None:
    """The request body as a JSON object (what ``bodyKeyOverride`` needs), or None."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def request_for(
    prepared: bytes,
    method: bytes,
    path: bytes,
    fallback: Fallback,
    body_json: dict[str, Any] | None,
) -> bytes:
    """The call's request as it goes to ``fallback``: the prepared request (head and body, as
    the route's provider would get it) with the target's path, host and headers, and its body
    with the override merged in."""
    head, _, body = prepared.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")[2:]  # the request line and host are the target's
    replaced = {name for name, _ in fallback.headers}
    had_length = False
    kept = []
    for line in lines:
        name = line.split(b":", 1)[0].strip().lower()
        if name == b"content-length":
            had_length = True
        elif name not in replaced:
            kept.append(line)
    if fallback.body_override is not None and body_json is not None:
        body = msgspec.json.encode(merged(body_json, fallback.body_override))
    out = [b"%s %s HTTP/1.1" % (method, path), b"host: " + fallback.upstream.host_header]
    out.extend(kept)
    out.extend(b"%s: %s" % pair for pair in fallback.headers)
    if had_length or body:
        out.append(b"content-length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body
