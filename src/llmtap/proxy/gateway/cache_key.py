"""The cache key of a call: what must be equal for two calls to share an answer.

A SHA-256 over length-prefixed parts, so no two different calls can spell the same input:

* method, target origin and path (with its query), as forwarded;
* the request body as the client sent it; with ``Helicone-Cache-Ignore-Keys`` and a body that is
  a JSON object, the object without those top-level keys, re-encoded with sorted keys (any other
  body is used as sent: the ignore list then does nothing, and the key is only stricter);
* the cache headers that shape it: the seed, the bucket size and the ignore list;
* the caller's credentials: ``Authorization``, ``x-api-key``, ``api-key`` and the llmtap key,
  plus the headers that choose an account or an answer's shape (``OpenAI-Organization``,
  ``OpenAI-Project``, ``anthropic-version``, ``anthropic-beta``, ``Accept-Encoding``). They enter
  only the hash: a cached answer is never served to another key or organization, and no
  credential is stored;
* whether llmtap asked the stream for its usage (the bytes saved then carry the extra chunk);
* with ``Helicone-Fallbacks``, the list as sent: it replaces the call's route with its targets,
  their credentials and body keys, so the answer of one list is never served to a call that
  sends another, or none (docs/decisions/2026-12-01-cache-with-retries.md). Appended only when
  present, so the key of every other call is what it was.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec

from llmtap.proxy.gateway.cache_request import CacheRequest

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange

KEY_VERSION = b"llmtap-cache-1"
_KEYED_HEADERS = (
    b"authorization",
    b"x-api-key",
    b"api-key",
    b"openai-organization",
    b"openai-project",
    b"anthropic-version",
    b"anthropic-beta",
    b"accept-encoding",
)
_KEYED_SET = frozenset(_KEYED_HEADERS)
# most request headers are not keyed: their name's length rules them out without a lower()
_KEYED_LENGTHS = frozenset(len(name) for name in _KEYED_HEADERS)
# a header name and a count of 0: how each keyed header the call did not send is hashed;
# with a count of 1, the start of one that was sent once (the value follows)
_KEYED_PARTS = tuple(
    (name, b"%d:%s1:0" % (len(name), name), b"%d:%s1:1" % (len(name), name))
    for name in _KEYED_HEADERS
)
_NONE_KEYED = b"".join(absent for _, absent, _ in _KEYED_PARTS)
_VERSION_PART = b"%d:%s" % (len(KEY_VERSION), KEY_VERSION)
_decode = msgspec.json.Decoder()
_encode_sorted = msgspec.json.Encoder(order="sorted")


def keyed_body(body: bytes, ignore_keys: tuple[str, ...]) -> bytes:
    """The body as the key sees it (parsed only when keys are to be ignored): ``R`` + the raw
    bytes, or ``J`` + the object re-encoded, so a raw body can never spell a parsed one."""
    if not ignore_keys or not body:
        return b"R" + body
    try:
        data = _decode.decode(body)
    except msgspec.DecodeError:
        return b"R" + body
    if not isinstance(data, dict):
        return b"R" + body
    for key in ignore_keys:
        data.pop(key, None)
    return b"J" + _encode_sorted.encode(data)


def cache_key(exchange: Exchange, request: CacheRequest) -> str:
    """Hex digest naming the call's bucket (the exchange is routed: ``upstream`` is set).

    The parts are joined and hashed once (the digest of the concatenation is that of the
    updates one by one: keys are what they were). It runs on the loop for every cached call,
    hits included, hence the spelling: no work for the headers that are not keyed."""
    upstream = exchange.upstream
    tap = exchange.tap
    assert upstream is not None and tap is not None
    auth = tap.auth
    raw = exchange.request_body
    body = keyed_body(raw, request.ignore_keys) if request.ignore_keys else b"R" + raw
    path = exchange.upstream_path
    method = exchange.method
    origin = upstream.origin.encode()
    usage = b"usage" if exchange.usage_filter is not None else b""
    who = b"-" if auth is None else b"+" + auth.encode("utf-8", "surrogateescape")
    # every part as ``<length>:<bytes>``, in one formatting (``request.key_part``: the
    # ignore list, the seed and the bucket size, formatted once per set of cache headers)
    parts = [
        b"%s%d:%s%d:%s%d:%s%d:%s%s%d:%s%d:%s"
        % (
            _VERSION_PART,
            len(method),
            method,
            len(origin),
            origin,
            len(path),
            path,
            len(body),
            body,
            request.key_part,
            len(usage),
            usage,
            len(who),
            who,
        )
    ]
    wanted: dict[bytes, list[bytes]] | None = None
    for name, value in exchange.request_headers:
        if len(name) in _KEYED_LENGTHS:
            lower = name.lower()
            if lower in _KEYED_SET:
                if wanted is None:
                    wanted = {}
                wanted.setdefault(lower, []).append(value)
    if wanted is None:
        parts.append(_NONE_KEYED)
    else:
        for name, absent, once in _KEYED_PARTS:
            values = wanted.get(name)
            if values is None:
                parts.append(absent)
            elif len(values) == 1:
                value = values[0]
                parts.append(b"%s%d:%s" % (once, len(value), value))
            else:
                count = b"%d" % len(values)
                parts.append(b"%d:%s%d:%s" % (len(name), name, len(count), count))
                parts.extend(b"%d:%s" % (len(value), value) for value in values)
    fallbacks = tap.features.get("fallbacks") if tap.features else None
    if fallbacks is not None:
        raw_list = fallbacks.encode("utf-8", "surrogateescape")
        parts.append(b"9:fallbacks%d:%s" % (len(raw_list), raw_list))
    return hashlib.sha256(b"".join(parts)).hexdigest()
