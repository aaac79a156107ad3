"""Header handling, redaction and routing of the proxy (pure functions)."""

from __future__ import annotations

import uuid

import pytest

from llmtap.capture.redaction import redact_headers, redact_url
from llmtap.capture.tap import split_headers
from llmtap.proxy.routing import RouteError, Router, is_public_address
from llmtap.settings import Settings


def test_tap_headers_are_parsed_and_never_forwarded() -> None:
    rid = str(uuid.uuid4())
    forward, tap = split_headers(
        [
            (b"Authorization", b"Bearer sk-provider"),
            (b"Helicone-Auth", b"Bearer sk-llmtap-x"),
            (b"Helicone-User-Id", b"alice"),
            (b"Llmtap-User-Id", b"bob"),
            (b"Helicone-Property-Env", b"prod"),
            (b"llmtap-property-team", b"core"),
            (b"Helicone-Request-Id", rid.encode()),
            (b"Helicone-Omit-Response", b"true"),
            (b"Helicone-Stream-Usage", b"false"),
            (b"Connection", b"keep-alive"),
            (b"Host", b"example"),
            (b"Content-Length", b"12"),
            (b"X-Custom", b"kept"),
        ]
    )
    assert forward == [(b"Authorization", b"Bearer sk-provider"), (b"X-Custom", b"kept")]
    assert tap.auth == "Bearer sk-llmtap-x"
    assert tap.user_id == "bob"  # the Llmtap- alias wins
    assert tap.properties == {"env": "prod", "team": "core"}
    assert tap.request_id == rid
    assert tap.omit_response and not tap.omit_request
    assert tap.stream_usage is False


def test_invalid_request_id_is_replaced() -> None:
    _, tap = split_headers([(b"Helicone-Request-Id", b"nope")])
    assert tap.request_id != "nope" and uuid.UUID(tap.request_id)


def test_secrets_are_redacted_everywhere() -> None:
    headers = redact_headers(
        [
            (b"Authorization", b"Bearer sk-secret"),
            (b"x-api-key", b"sk-ant-secret"),
            (b"api-key", b"azure-secret"),
            (b"x-goog-api-key", b"goog-secret"),
            (b"Helicone-Auth", b"Bearer sk-llmtap-secret"),
            (b"content-type", b"application/json"),
        ]
    )
    assert "secret" not in repr(headers)
    assert headers["content-type"] == "application/json"
    assert headers["authorization"].startswith("<redacted:")
    url = redact_url("https://u:pw@host/v1/models?key=goog-secret&alt=sse")
    assert "secret" not in url and "pw" not in url and "alt=sse" in url


def router(**overrides: object) -> Router:
    return Router(Settings(**overrides))  # type: ignore[arg-type]


def test_routing_by_sdk_headers_prefix_and_named_route() -> None:
    r = router(routes={"groq": "https://api.groq.com/openai"})
    _, tap = split_headers([])
    up, path = r.route(b"/v1/chat/completions", tap, [])
    assert (up.provider, up.host, path) == ("openai", "api.openai.com", b"/v1/chat/completions")
    up, path = r.route(b"/v1/messages", tap, [(b"anthropic-version", b"2023-06-01")])
    assert (up.provider, up.host) == ("anthropic", "api.anthropic.com")
    up, path = r.route(b"/anthropic/v1/messages?beta=true", tap, [])
    assert up.provider == "anthropic" and path == b"/v1/messages?beta=true"
    up, path = r.route(b"/router/groq/v1/chat/completions", tap, [])
    assert (up.host, path) == ("api.groq.com", b"/openai/v1/chat/completions")
    with pytest.raises(RouteError) as err:
        r.route(b"/router/nope/v1/x", tap, [])
    assert err.value.status == 404


def test_target_url_needs_a_known_or_allowed_host() -> None:
    r = router(allowed_target_hosts=["llm.internal:8000"])
    _, tap = split_headers([(b"Helicone-Target-URL", b"https://api.together.xyz")])
    up, path = r.route(b"/v1/chat/completions", tap, [])
    assert (up.provider, up.check_address, path) == ("together", True, b"/v1/chat/completions")
    _, tap = split_headers([(b"Helicone-Target-URL", b"http://llm.internal:8000/base")])
    up, path = r.route(b"/v1/x", tap, [])
    assert (up.host, up.port, up.base_path) == ("llm.internal", 8000, "/base")
    _, tap = split_headers([(b"Helicone-Target-URL", b"https://evil.example")])
    with pytest.raises(RouteError) as err:
        r.route(b"/v1/x", tap, [])
    assert err.value.status == 403


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("2606:4700::1111", True),
    ],
)
def test_private_address_guard(address: str, public: bool) -> None:
    assert is_public_address(address) is public
