"""Retry headers llmtap cannot honour are refused before anything reaches the provider: a 400 in
the caller's provider shape, naming the header and the accepted range, never echoing more than
a short prefix of the value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream

CHAT: Any = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadedProxy, MockUpstream]]:
    with MockUpstream() as mock:
        settings = Settings(
            data_dir=tmp_path_factory.mktemp("hostile-retry"),
            proxy_port=0,
            openai_base_url=mock.url,
            anthropic_base_url=mock.url,
        )
        with ThreadedProxy(settings) as proxy:
            yield proxy, mock


BAD = [
    ("Helicone-Retry-Num", "1e9"),
    ("Helicone-Retry-Num", "11"),
    ("Helicone-Retry-Num", "-1"),
    ("Helicone-Retry-Num", "2.5"),
    ("Helicone-Retry-Num", "NaN"),
    ("Helicone-Retry-Num", "inf"),
    ("Helicone-Retry-Num", "five"),
    ("Helicone-Retry-Num", ""),
    ("Helicone-Retry-Factor", "0"),
    ("Helicone-Retry-Factor", "-2"),
    ("Helicone-Retry-Factor", "1e308"),
    ("Helicone-Retry-Min-Timeout", "-5"),
    ("Helicone-Retry-Min-Timeout", "1e12"),
    ("Helicone-Retry-Max-Timeout", "-1"),
    ("Llmtap-Retry-Max-Timeout", "60001"),
    ("Helicone-Retry-Max-Timeout", "9" * 5000),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_retry_header_is_a_400_in_openai_shape(
    gw: tuple[ThreadedProxy, MockUpstream], name: str, value: str
) -> None:
    proxy, mock = gw
    before = len(mock.requests)
    reply = httpx.post(
        proxy.url + "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-test", "Helicone-Retry-Enabled": "true", name: value},
        timeout=10,
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_retry_header"
    assert name.split("-", 1)[1].lower() in error["message"].lower()
    assert len(error["message"]) < 200
    assert len(mock.requests) == before


def test_a_bad_retry_header_is_a_400_in_anthropic_shape(
    gw: tuple[ThreadedProxy, MockUpstream],
) -> None:
    proxy, mock = gw
    before = len(mock.requests)
    reply = httpx.post(
        proxy.url + "/v1/messages",
        json={"model": "claude-3-5-haiku-latest", "max_tokens": 5, "messages": CHAT["messages"]},
        headers={
            "x-api-key": "sk-ant",
            "anthropic-version": "2023-06-01",
            "Helicone-Retry-Enabled": "true",
            "Helicone-Retry-Num": "1000000000",
        },
        timeout=10,
    )
    assert reply.status_code == 400
    body = reply.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "Retry-Num" in body["error"]["message"]
    assert len(mock.requests) == before


def test_bad_values_without_retry_enabled_are_ignored(
    gw: tuple[ThreadedProxy, MockUpstream],
) -> None:
    proxy, _ = gw
    reply = httpx.post(
        proxy.url + "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-test", "Helicone-Retry-Num": "-1"},
        timeout=10,
    )
    assert reply.status_code == 200
