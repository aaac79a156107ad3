"""Which header and query-parameter names are redacted before storage (the name rule)."""

from __future__ import annotations

import pytest

from llmtap.capture.redaction import redact_headers, redact_url
from llmtap.capture.tap import as_header_list, read_tap

SECRET = "s3cr3t-canary"

REDACTED = [
    "Authorization",
    "Proxy-Authorization",
    "x-api-key",
    "api-key",
    "api_key",
    "apikey",
    "openai-api-key",
    "x-goog-api-key",
    "x-foo-key",
    "Ocp-Apim-Subscription-Key",
    "x-auth-token",
    "X-Amz-Security-Token",
    "x-csrf-token",
    "cookie",
    "Cookie2",
    "set-cookie",
    "x-client-secret",
    "x-password",
    "db-passwd",
    "x-credentials",
    "x-signature",
    "Helicone-Auth",
    "Llmtap-Auth",
    "Helicone-Posthog-Key",
    "Helicone-Signature",
    "x-jwt-assertion",
]
KEPT = [
    "content-type",
    "content-encoding",
    "user-agent",
    "x-request-id",
    "openai-organization",
    "anthropic-version",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-limit-tokens",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "Helicone-RateLimit-Policy",
    "Helicone-Cache-Ignore-Keys",
    "Helicone-Session-Id",
    "Helicone-User-Id",
    "WWW-Authenticate",
    "Access-Control-Allow-Credentials",
    "Idempotency-Key",
    "x-mock-cached-tokens",
    "keep-alive",
]


@pytest.mark.parametrize("name", REDACTED)
def test_secret_looking_header_names_are_redacted(name: str) -> None:
    stored = redact_headers([(name.encode(), SECRET.encode())])
    assert stored[name.lower()].startswith("<redacted:")
    assert SECRET not in repr(stored)


@pytest.mark.parametrize("name", KEPT)
def test_harmless_header_names_are_kept(name: str) -> None:
    assert redact_headers([(name.encode(), b"v")]) == {name.lower(): "v"}


@pytest.mark.parametrize(
    "param", ["key", "api_key", "apikey", "access_token", "token", "X-Amz-Signature", "sig"]
)
def test_secret_query_parameters_are_redacted(param: str) -> None:
    url = redact_url(f"https://h/v1/x?alt=sse&{param}={SECRET}&max_tokens=5")
    assert SECRET not in url and "alt=sse" in url and "max_tokens=5" in url


def test_async_log_headers_go_through_the_same_rule() -> None:
    stored, tap = read_tap(
        [as_header_list({"openai-api-key": SECRET, "x-foo-key": SECRET, "Helicone-User-Id": "u"})]
    )
    assert SECRET not in repr(stored) and tap.user_id == "u"
