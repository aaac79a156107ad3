"""Secrets never stored: provider keys are replaced before anything reaches the queue.

Applied by the shipper to every captured header and URL (ARCHITECTURE invariant 5). The redacted
form keeps a short, non-reversible hint so a user can tell two keys apart in the dashboard.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "helicone-auth",
        "llmtap-auth",
        "cookie",
        "set-cookie",
        "openai-organization-key",
    }
)
SECRET_QUERY_PARAMS = frozenset({"key", "api_key", "api-key", "apikey", "access_token", "token"})


def redact_value(value: str) -> str:
    """``<redacted:ab12cd34>``: a fingerprint of the secret, never the secret."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"<redacted:{digest}>"


def redact_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased header dict with every secret header value redacted."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in SECRET_HEADERS:
            value = redact_value(value)
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def redact_url(url: str) -> str:
    """The URL with secret query parameters (``?key=…``) and userinfo redacted."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "<redacted>@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_QUERY_PARAMS for k, _ in pairs):
            query = urlencode(
                [(k, redact_value(v) if k.lower() in SECRET_QUERY_PARAMS else v) for k, v in pairs]
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
