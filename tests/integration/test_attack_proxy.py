"""Attacks on the proxy's client side that the hostile-client tests did not cover, on raw sockets
against a real ``ThreadedProxy`` and the mock upstream."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import published_records, wait_for

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def proxy_settings(tmp_path: Path, mock: MockUpstream, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock.url,
        anthropic_base_url=mock.url,
        **overrides,
    )


def read_until_closed(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the proxy writes until it closes (or ``timeout_s`` passes)."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    return data + b"<still open>"


@pytest.mark.parametrize("expect", [b"expect: 100-continue\r\n", b""], ids=["expect", "plain"])
def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
    tmp_path: Path, mock: MockUpstream, expect: bytes
) -> None:
    """With ``Expect: 100-continue`` the client waits for the proxy's word before sending the
    body: the 413 must come at once, not after the body timeout (and never a 100); without it
    the proxy must not read gigabytes only to refuse them."""
    settings = proxy_settings(tmp_path, mock, max_request_body_bytes=1000, body_read_timeout_s=30)
    with ThreadedProxy(settings) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"helicone-user-id: too-big\r\n%scontent-length: 10000000000\r\n\r\n" % expect
        )
        answer = read_until_closed(s, timeout_s=5)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert not answer.endswith(b"<still open>")
        assert b"100 Continue" not in answer
        records = wait_for(lambda: published_records(settings) or None, what="the refusal's record")
        (record,) = records.values()
        assert (record["status"], record["user_id"]) == (413, "too-big")


def test_secrets_in_url_valued_headers_are_redacted_like_the_url(
    tmp_path: Path, mock: MockUpstream
) -> None:
    """``Helicone-Target-URL`` is stored with the call's headers: its query key and user info
    must not be kept there in clear while the target URL column redacts them."""
    host = mock.url.split("://", 1)[1]
    settings = proxy_settings(
        tmp_path, mock, allowed_target_hosts=[host], allow_private_targets=True
    )
    target = f"http://user:hunter2@{host}/v1?key=AIzaSECRET&alt=sse"
    with ThreadedProxy(settings) as proxy:
        answer = httpx.post(
            proxy.url + "/v1/chat/completions",
            content=CHAT,
            headers={
                "Authorization": "Bearer sk-provider",
                "Content-Type": "application/json",
                "Helicone-Target-URL": target,
                "Referer": "https://app.example/page?access_token=REFSECRET",
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        records = wait_for(lambda: published_records(settings) or None, what="the record")
    (record,) = records.values()
    stored = json.dumps(record)
    for secret in ("AIzaSECRET", "hunter2", "REFSECRET"):
        assert secret not in stored, secret
    assert "alt=sse" in record["request_headers"]["helicone-target-url"]
