"""Hostile ``Helicone-Fallbacks``: malformed or huge lists, header injection, and targets that
would make llmtap an open relay or reach private addresses. Each is refused before any byte goes
to any target (a 400, or the router's 403 ``target_not_allowed``), in the caller's error shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream

CHAT: Any = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream) -> Iterator[ThreadedProxy]:
    """Loopback targets allowed by name (the mock is one), private addresses not."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hostile-fallbacks"),
        proxy_port=0,
        openai_base_url=mock.url,
        anthropic_base_url=mock.url,
        allowed_target_hosts=["127.0.0.1", "localhost", "169.254.169.254"],
    )
    with ThreadedProxy(settings) as running:
        yield running


def post(proxy: ThreadedProxy, fallbacks: str, body: Any = CHAT) -> httpx.Response:
    return httpx.post(
        proxy.url + "/v1/chat/completions",
        content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={
            "authorization": "Bearer sk-test",
            "content-type": "application/json",
            "Helicone-Fallbacks": fallbacks,
        },
        timeout=10,
    )


def entry(**fields: Any) -> dict[str, Any]:
    return {"target-url": "https://api.openai.com", "headers": {}, "onCodes": [500], **fields}


BAD: list[tuple[str, str]] = [
    ("not json", "invalid_fallbacks"),
    ("{}", "invalid_fallbacks"),
    ("[]", "invalid_fallbacks"),
    ('"https://api.openai.com"', "invalid_fallbacks"),
    ("[" * 20000 + "]" * 20000, "invalid_fallbacks"),
    # 1000 targets still fit in the request head limit when written tightly
    (
        json.dumps([{"target-url": "http://a", "onCodes": []}] * 1000, separators=(",", ":")),
        "invalid_fallbacks",
    ),
    (json.dumps([entry()] * 11), "invalid_fallbacks"),
    (json.dumps(["https://api.openai.com"]), "invalid_fallbacks"),
    (json.dumps([{"headers": {}, "onCodes": [500]}]), "invalid_fallbacks"),
    (json.dumps([entry(**{"target-url": 42})]), "invalid_fallbacks"),
    (json.dumps([{"target-url": "https://api.openai.com"}]), "invalid_fallbacks"),
    (json.dumps([entry(onCodes="500")]), "invalid_fallbacks"),
    (json.dumps([entry(onCodes=[99])]), "invalid_fallbacks"),
    (json.dumps([entry(onCodes=[True])]), "invalid_fallbacks"),
    (json.dumps([entry(onCodes=[{"from": "500", "to": 599}])]), "invalid_fallbacks"),
    (json.dumps([entry(onCodes=[500] * 101)]), "invalid_fallbacks"),
    (json.dumps([entry(headers=["a"])]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"x": 1})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"x": "a\r\nhost: evil.example"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"x\r\ny": "a"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"bad name": "a"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"x": "\u0100"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"Host": "evil.example"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"content-length": "0"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"transfer-encoding": "chunked"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"helicone-auth": "Bearer x"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={"proxy-authorization": "Basic x"})]), "invalid_fallbacks"),
    (json.dumps([entry(headers={f"x-{i}": "a" for i in range(65)})]), "invalid_fallbacks"),
    (json.dumps([entry(bodyKeyOverride=["model"])]), "invalid_fallbacks"),
    (
        json.dumps([entry(bodyKeyOverride=json.loads('{"a":' * 40 + "1" + "}" * 40))]),
        "invalid_fallbacks",
    ),
    (json.dumps([entry(**{"target-url": "ftp://api.openai.com"})]), "invalid_target_url"),
    (json.dumps([entry(**{"target-url": "https://[::1"})]), "invalid_target_url"),
]


@pytest.mark.parametrize(("header", "code"), BAD, ids=range(len(BAD)))
def test_a_bad_fallbacks_header_is_a_400(
    proxy: ThreadedProxy, mock: MockUpstream, header: str, code: str
) -> None:
    before = len(mock.requests)
    reply = post(proxy, header)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == code
    assert "Helicone-Fallbacks" in error["message"] or "target URL" in error["message"]
    assert len(error["message"]) < 400  # never the whole header back
    assert len(mock.requests) == before


def test_body_key_override_needs_a_json_object_body(
    proxy: ThreadedProxy, mock: MockUpstream
) -> None:
    before = len(mock.requests)
    reply = post(
        proxy,
        json.dumps([entry(bodyKeyOverride={"model": "x"})]),
        body=b"[1, 2, 3]",
    )
    assert reply.status_code == 400
    assert "bodyKeyOverride" in reply.json()["error"]["message"]
    assert len(mock.requests) == before


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example",
        "http://10.0.0.1",
        "http://metadata.google.internal",
        "http://[::1]:8080",
    ],
)
def test_a_target_that_is_neither_a_provider_nor_allowed_is_refused(
    proxy: ThreadedProxy, mock: MockUpstream, url: str
) -> None:
    before = len(mock.requests)
    # a good first target does not carry a bad second one through: the list is checked whole
    reply = post(
        proxy, json.dumps([entry(**{"target-url": mock.url}), entry(**{"target-url": url})])
    )
    assert reply.status_code == 403
    error = reply.json()["error"]
    assert error["code"] == "target_not_allowed"
    assert "Helicone-Fallbacks[1]" in error["message"]
    assert len(mock.requests) == before


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9", "http://169.254.169.254", "http://localhost:9"]
)
def test_an_allowed_host_at_a_private_address_is_refused_at_connect(
    proxy: ThreadedProxy, mock: MockUpstream, url: str
) -> None:
    """Named in ``allowed_target_hosts`` but private, with ``allow_private_targets`` off: the
    pool's address guard refuses it, and the call ends there (no later target is tried: a
    refused target is the caller's mistake, not an outage)."""
    before = len(mock.requests)
    reply = post(
        proxy,
        json.dumps([entry(**{"target-url": url}), entry(**{"target-url": mock.url})]),
    )
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "target_not_allowed"
    assert reply.headers["llmtap-error"] == "target_not_allowed"
    assert len(mock.requests) == before


def test_the_anthropic_shape_for_an_anthropic_call(proxy: ThreadedProxy) -> None:
    reply = httpx.post(
        proxy.url + "/v1/messages",
        json={"model": "claude-3-5-haiku-latest", "max_tokens": 5, "messages": CHAT["messages"]},
        headers={
            "x-api-key": "sk-ant",
            "anthropic-version": "2023-06-01",
            "Helicone-Fallbacks": "[{]",
        },
        timeout=10,
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_a_header_too_large_for_the_proxy_is_a_431(proxy: ThreadedProxy, tmp_path: Path) -> None:
    reply = post(proxy, json.dumps([entry(headers={"x-pad": "a" * 70_000})]))
    assert reply.status_code == 431
