"""Secrets never stored: secret-looking headers and query parameters are replaced before anything
reaches the queue.

Applied by the shipper to every captured request and response header and to the URL, and by the
ingestion endpoints to the headers of async logs (docs/architecture.md, invariant 5). The rule
is a name rule, not a list of known names, because providers and gateways keep inventing new ones
(``openai-api-key``, ``x-foo-key``, ``x-auth-token``): a name is secret when, lower-cased, it
contains one of :data:`SECRET_WORDS`, unless it is in :data:`HARMLESS_NAMES` or is a rate-limit
header. ``token`` followed by ``s`` (``x-ratelimit-remaining-tokens``) counts tokens, not
credentials. The redacted form keeps a short, non-reversible hint so a user can tell two keys
apart in the dashboard. docs/security.md states the rule for users.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_WORDS = (
    "key",
    "token",
    "secret",
    "auth",
    "cookie",
    "passw",
    "pwd",
    "credential",
    "signature",
    "jwt",
)
"""Substrings of a lower-cased header or query-parameter name that make it secret."""
_SECRET = re.compile("|".join("token(?!s)" if w == "token" else w for w in SECRET_WORDS))

HARMLESS_NAMES = frozenset(
    {
        # challenges and CORS flags, not credentials
        "www-authenticate",
        "proxy-authenticate",
        "access-control-allow-credentials",
        # which body fields Helicone's cache ignores (field names, not keys)
        "helicone-cache-ignore-keys",
        "llmtap-cache-ignore-keys",
        # a client's retry de-duplication id
        "idempotency-key",
    }
)
"""Names that match :data:`SECRET_WORDS` but carry nothing secret: kept as sent."""
_HARMLESS_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "ratelimit-", "helicone-ratelimit-")
URL_HEADER_NAMES = frozenset(
    {"helicone-target-url", "llmtap-target-url", "referer", "location", "content-location"}
)
"""Headers whose value is a URL: stored through :func:`redact_url`, like the call's own URL (a
``?key=`` or ``user:pw@`` there is as secret as in the target)."""
FALLBACKS_HEADER_NAMES = frozenset({"helicone-fallbacks", "llmtap-fallbacks"})
"""Headers whose value is a JSON list of targets carrying their own headers (other providers'
keys) and URLs: stored with those redacted by the same rules (:func:`redact_fallbacks`)."""
SECRET_QUERY_NAMES = frozenset({"sig"})
"""Query parameters secret by their exact name (Azure SAS ``sig``)."""


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a header or query-parameter ``name`` (any case) holds a secret."""
    lower = name.lower()
    if lower in HARMLESS_NAMES or lower.startswith(_HARMLESS_PREFIXES):
        return False
    return _SECRET.search(lower) is not None


def redact_value(value: str) -> str:
    """``<redacted:ab12cd34>``: a fingerprint of the secret, never the secret."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"<redacted:{digest}>"


_KEEP = 0
_SECRET_VALUE = 1
_URL_VALUE = 2
_FALLBACKS_VALUE = 3


@functools.lru_cache(maxsize=4096)
def _header_rule(raw_name: bytes) -> tuple[str, int]:
    """A header name as stored (lower-cased text) and what its value needs. Cached: every
    logged call repeats the same few dozen names, and this runs for each of its headers."""
    name = raw_name.decode("latin-1").lower()
    if is_secret_name(name):
        return name, _SECRET_VALUE
    if name in URL_HEADER_NAMES:
        return name, _URL_VALUE
    if name in FALLBACKS_HEADER_NAMES:
        return name, _FALLBACKS_VALUE
    return name, _KEEP


def redact_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased header dict with every secret header value redacted."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name, rule = _header_rule(raw_name)
        value = raw_value.decode("latin-1")
        if rule:
            if rule == _SECRET_VALUE:
                value = redact_value(value)
            elif rule == _URL_VALUE:
                value = _redacted_url_value(value)
            else:
                value = redact_fallbacks(value)
        if name in out:
            out[name] = f"{out[name]}, {value}"
        else:
            out[name] = value
    return out


def _secret_param(name: str) -> bool:
    return name.lower() in SECRET_QUERY_NAMES or is_secret_name(name)


def redact_url(url: str) -> str:
    """The URL with secret query parameters (``?key=…``) and userinfo redacted."""
    if "?" in url or "@" in url:
        return _redact_url(url)
    return _plain_url(url)


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "<redacted>@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, redact_value(v) if _secret_param(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_plain_url = functools.lru_cache(maxsize=1024)(_redact_url)
"""``_redact_url`` of a URL with neither a query nor userinfo, cached: the proxy logs the same
few provider URLs over and over. Only such URLs are cached: nothing secret stays in memory."""


def _redacted_url_value(value: str) -> str:
    if "?" not in value and "@" not in value:
        return value  # nothing to redact: skip the parse on every call with a target URL
    try:
        return redact_url(value)
    except ValueError:  # not a URL we can take apart: keep none of it
        return redact_value(value)


def redact_fallbacks(value: str) -> str:
    """A ``Helicone-Fallbacks`` value with every secret-named key's value (its targets'
    ``authorization``, ``x-api-key`` ..., at any depth) and every ``target-url``'s secrets
    redacted; a value that is not JSON is redacted whole."""
    try:
        return json.dumps(_redact_json(json.loads(value)))
    except (ValueError, RecursionError):
        return redact_value(value)


def _redact_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if is_secret_name(key) and not isinstance(item, (dict, list)):
            out[key] = redact_value(str(item))
        elif key == "target-url" and isinstance(item, str):
            out[key] = _redacted_url_value(item)
        else:
            out[key] = _redact_json(item)
    return out
