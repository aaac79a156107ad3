"""The cache key of calls that also ask for retries or fallbacks: ``Helicone-Fallbacks`` (which
replaces the call's route, credentials and body keys) is part of it; retry headers are not."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from llmtap.capture.tap import TapHeaders
from llmtap.proxy.gateway.cache_key import cache_key
from llmtap.proxy.gateway.cache_request import CacheRequest
from llmtap.proxy.routing import Upstream

ON = {"cache-enabled": "true"}
LIST_A = '[{"target-url": "https://api.openai.com", "headers": {}, "onCodes": [500]}]'
GOLDEN_FULL = "5bb762302e0833532caa13214b983547e059a3125e36188667536b8e0d62f325"
GOLDEN_PLAIN = "969e289eb16638aceb2af3df1d36f54cb292d72043238be9659025e3b9da1616"
LIST_B = '[{"target-url": "https://api.groq.com/openai", "headers": {}, "onCodes": [500]}]'


def key(features: dict[str, str]) -> str:
    exchange: Any = SimpleNamespace(
        upstream=Upstream("openai", "https", "api.openai.com", 443, "", False),
        tap=TapHeaders(request_id="r", features=features),
        method=b"POST",
        upstream_path=b"/v1/chat/completions",
        request_body=b'{"model":"gpt-4o-mini"}',
        usage_filter=None,
        request_headers=[(b"authorization", b"Bearer sk-one")],
    )
    return cache_key(exchange, CacheRequest(read=True, save=True))


def test_the_fallback_list_as_sent_is_part_of_the_key() -> None:
    alone = key(ON)
    a = key({**ON, "fallbacks": LIST_A})
    assert len({alone, a, key({**ON, "fallbacks": LIST_B})}) == 3
    assert key({**ON, "fallbacks": LIST_A}) == a


def test_retry_headers_are_not() -> None:
    retried = {**ON, "retry-enabled": "true", "retry-num": "3"}
    assert key(retried) == key(ON)


def test_keys_are_what_they_were() -> None:
    """The digest of llmtap-cache-1 keys, as the part-by-part hashing of 2026-12-01 gave them:
    a faster spelling of the key must not orphan every answer already stored."""
    exchange: Any = SimpleNamespace(
        upstream=Upstream("openai", "http", "127.0.0.1", 18100, "", False),
        tap=TapHeaders(request_id="r", features={**ON, "fallbacks": LIST_A}, auth="ll-key"),
        method=b"POST",
        upstream_path=b"/v1/chat/completions?x=1",
        request_body=b'{"model":"gpt-4o-mini","user":"u1"}',
        usage_filter=object(),
        request_headers=[
            (b"Authorization", b"Bearer sk-one"),
            (b"content-type", b"application/json"),
            (b"anthropic-beta", b"a"),
            (b"Anthropic-Beta", b"b"),
            (b"OpenAI-Organization", b"org-1"),
        ],
    )
    request = CacheRequest(read=True, save=True, bucket_size=3, seed="s1", ignore_keys=("user",))
    assert cache_key(exchange, request) == GOLDEN_FULL
    assert key(ON) == GOLDEN_PLAIN
