"""The arithmetic of retries and the request a fallback target gets, without sockets."""

from __future__ import annotations

import json
from email.utils import formatdate

import pytest

from llmtap.proxy.gateway.fallbacks import parse_fallbacks, request_for
from llmtap.proxy.gateway.retry_policy import (
    GatewayHeaderError,
    RetryPolicy,
    parse_retry,
    retry_after_s,
)
from llmtap.proxy.routing import Router
from llmtap.settings import Settings


def test_defaults_are_helicones() -> None:
    assert parse_retry({"retry-enabled": "true"}, 10, 60_000) == RetryPolicy(5, 2, 1000, 10000)
    assert parse_retry({"retry-num": "3"}, 10, 60_000) is None
    assert parse_retry({"retry-enabled": "TRUE", "retry-num": "0"}, 10, 60_000) == RetryPolicy(
        0, 2, 1000, 10000
    )


def test_backoff_grows_by_the_factor_and_stops_at_max_timeout() -> None:
    policy = RetryPolicy(retries=5, factor=2, min_timeout_ms=1000, max_timeout_ms=10000)
    assert [policy.wait_s(n, None) for n in range(1, 6)] == [1, 2, 4, 8, 10]


def test_retry_after_lengthens_the_wait_up_to_max_timeout() -> None:
    policy = RetryPolicy(retries=5, factor=2, min_timeout_ms=100, max_timeout_ms=3000)
    assert policy.wait_s(1, 2.0) == 2.0
    assert policy.wait_s(1, 3600.0) == 3.0
    assert policy.wait_s(3, 0.0) == 0.4  # a shorter Retry-After never shortens the backoff


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s([(b"Retry-After", b"7")]) == 7.0
    assert retry_after_s([(b"retry-after", b" 1.5 ")]) == 1.5
    assert (
        retry_after_s([(b"retry-after", formatdate(1000.0 + 30, usegmt=True).encode())], 1000.0)
        == 30.0
    )
    assert (
        retry_after_s([(b"retry-after", formatdate(1000.0, usegmt=True).encode())], 5000.0) == 0.0
    )
    for bad in (b"-1", b"nan", b"inf", b"soon", b"", b"Mon, 99 Foo 2026 99:99:99 GMT"):
        assert retry_after_s([(b"retry-after", bad)]) is None
    assert retry_after_s([(b"x-other", b"1")]) is None


@pytest.mark.parametrize(
    "features",
    [{"retry-num": "1e9"}, {"retry-factor": "nan"}, {"retry-min-timeout": "-1"}],
)
def test_out_of_range_is_refused_not_clamped(features: dict[str, str]) -> None:
    with pytest.raises(GatewayHeaderError) as caught:
        parse_retry({"retry-enabled": "true", **features}, 10, 60_000)
    assert caught.value.status == 400


def test_a_fallback_request_gets_its_host_path_headers_and_body() -> None:
    router = Router(Settings(allowed_target_hosts=["vllm.internal:8000"]))
    [fallback] = parse_fallbacks(
        json.dumps(
            [
                {
                    "target-url": "http://vllm.internal:8000/base",
                    "headers": {"Authorization": "Bearer other", "x-new": "1"},
                    "onCodes": [500],
                    "bodyKeyOverride": {"model": "llama", "opts": {"a": 1}},
                }
            ]
        ),
        router,
        10,
    )
    prepared = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\n"
        b"authorization: Bearer mine\r\ncontent-type: application/json\r\n"
        b'content-length: 38\r\n\r\n{"model":"gpt","opts":{"b":2},"n":1}  '
    )
    body = {"model": "gpt", "opts": {"b": 2}, "n": 1}
    out = request_for(prepared, b"POST", b"/base/v1/chat/completions", fallback, body)
    head, _, sent = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /base/v1/chat/completions HTTP/1.1"
    assert lines[1] == b"host: vllm.internal:8000"
    assert b"authorization: Bearer mine" not in lines
    assert b"authorization: Bearer other" in lines
    assert b"x-new: 1" in lines
    assert b"content-type: application/json" in lines
    assert json.loads(sent) == {"model": "llama", "opts": {"b": 2, "a": 1}, "n": 1}
    assert f"content-length: {len(sent)}".encode() in lines


def test_a_stored_fallbacks_header_keeps_no_key() -> None:
    from llmtap.capture.redaction import redact_headers

    value = json.dumps(
        [
            {
                "target-url": "https://u:pw@api.example.com/v1?key=sk-1&x=2",
                "headers": {"Authorization": "Bearer sk-2", "x-team": "a"},
                "onCodes": [500],
                "bodyKeyOverride": {"nested": {"api_key": "sk-3", "secret": 4}},
            }
        ]
    )
    stored = redact_headers([(b"Helicone-Fallbacks", value.encode())])["helicone-fallbacks"]
    for secret in ("sk-1", "sk-2", "sk-3", "pw", '"secret": 4'):
        assert secret not in stored
    [entry] = json.loads(stored)
    assert entry["headers"]["x-team"] == "a"
    assert entry["onCodes"] == [500]
    assert entry["target-url"].startswith("https://<redacted>@api.example.com/v1?key=%3Credacted")
    for hostile in ("not json sk-4", "[" * 5000 + "]" * 5000):
        kept = redact_headers([(b"llmtap-fallbacks", hostile.encode())])["llmtap-fallbacks"]
        assert kept.startswith("<redacted:")
