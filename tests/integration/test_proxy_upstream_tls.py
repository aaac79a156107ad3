"""Provider connections over TLS: verification, SNI, what is trusted, pooling (docs/tls.md).

The proxy in-process (``ThreadedProxy``) in front of the mock upstream serving certificates from
the test CA (``support.tls``): good ones, and expired, wrong-host and unknown-CA ones that must
each fail the call with a provider-shaped 502 naming the reason, and a log line.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llmtap.errors import ConfigError
from llmtap.outbound.trust import outbound_context
from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import wait_for
from support.tls import Pki, TrustedMock

PROMPT: Any = [{"role": "user", "content": "hello over tls"}]
CHAT = {"model": "gpt-4o-mini", "messages": PROMPT}


@pytest.fixture(scope="module")
def good(pki: Pki) -> Iterator[MockUpstream]:
    with TrustedMock(pki) as mock:
        yield mock


def settings_for(tmp_path: Path, url: str, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=url,
        anthropic_base_url=url,
        **overrides,
    )


def post_chat(proxy: ThreadedProxy, stream: bool = False, **headers: str) -> httpx.Response:
    return httpx.post(
        proxy.url + "/v1/chat/completions",
        json={**CHAT, "stream": stream},
        headers={"authorization": "Bearer k", **headers},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("cert", "reason"),
    [
        ("wrong_host", "certificate verify failed: hostname mismatch"),
        ("expired", "certificate verify failed: certificate has expired"),
        ("unknown_ca", "certificate verify failed: unknown certificate authority"),
    ],
)
def test_a_bad_certificate_fails_the_call_with_a_502_naming_the_reason(
    tmp_path: Path, pki: Pki, cert: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        TrustedMock(pki, getattr(pki, cert)) as bad,
        ThreadedProxy(settings_for(tmp_path, bad.url, upstream_ca_file=pki.ca_file)) as proxy,
        caplog.at_level(logging.WARNING, logger="llmtap.proxy"),
    ):
        answered = post_chat(proxy)
        assert answered.status_code == 502
        error = answered.json()["error"]
        assert error["code"] == "upstream_tls_error"
        assert error["message"].startswith(f"upstream_tls_error: {reason}")
        assert answered.headers["llmtap-error"] == "upstream_tls_error"

        client = anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as raised:
            client.messages.create(model="claude-x", max_tokens=5, messages=PROMPT)
        assert raised.value.status_code == 502
        assert reason in str(raised.value)
        assert bad.requests == []  # nothing was sent, in clear or otherwise
    lines = [r.getMessage() for r in caplog.records if "upstream_tls_error" in r.getMessage()]
    assert len(lines) == 1  # once per origin and reason, not once per call
    assert reason in lines[0] and bad.url in lines[0]


def test_sni_is_sent_and_one_tls_connection_carries_the_calls(
    tmp_path: Path, pki: Pki, good: MockUpstream
) -> None:
    before_conns, before_names = good.connections, len(good.server_names)
    with ThreadedProxy(settings_for(tmp_path, good.url, upstream_ca_file=pki.ca_file)) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
        for _ in range(3):
            assert client.chat.completions.create(**CHAT).choices[0].message.content
            # read to the chunked body's end: the SDK stops at [DONE] and may close the
            # connection before the end reached the proxy, which then drops the upstream one
            streamed = post_chat(proxy, stream=True)
            assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
            wait_for(lambda: len(proxy.upstream_pool.idle_connections()) == 1, what="pooled")
    assert good.connections - before_conns == 1  # one handshake for six calls
    assert good.server_names[before_names:] == ["localhost"]


def test_a_plain_http_server_behind_an_https_url_is_never_spoken_to_in_clear(
    tmp_path: Path, pki: Pki
) -> None:
    with MockUpstream() as plain:
        url = f"https://127.0.0.1:{plain.port}"
        with ThreadedProxy(settings_for(tmp_path, url, upstream_ca_file=pki.ca_file)) as proxy:
            answered = post_chat(proxy)
        assert plain.requests == []
    assert answered.status_code == 502
    assert answered.json()["error"]["code"] == "upstream_tls_error"
    assert "does not speak TLS" in answered.json()["error"]["message"]


def test_a_server_that_never_completes_the_handshake_is_a_timeout_not_a_hang(
    tmp_path: Path,
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    url = f"https://localhost:{listener.getsockname()[1]}"
    try:
        with ThreadedProxy(settings_for(tmp_path, url, connect_timeout_s=1.0)) as proxy:
            started = time.monotonic()
            answered = post_chat(proxy)
            elapsed = time.monotonic() - started
    finally:
        for sock in [*accepted, listener]:
            sock.close()
    assert answered.status_code == 504
    assert answered.json()["error"]["code"] == "upstream_connect_timeout"
    assert elapsed < 10


def test_by_default_only_public_cas_are_trusted(tmp_path: Path, good: MockUpstream) -> None:
    with ThreadedProxy(settings_for(tmp_path, good.url)) as proxy:
        answered = post_chat(proxy)
    assert answered.status_code == 502
    assert "unknown certificate authority" in answered.json()["error"]["message"]


def test_a_private_ca_directory_is_trusted(tmp_path: Path, pki: Pki, good: MockUpstream) -> None:
    with ThreadedProxy(settings_for(tmp_path, good.url, upstream_ca_dir=pki.ca_dir)) as proxy:
        assert post_chat(proxy).status_code == 200


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
def test_ssl_cert_file_and_dir_are_honoured_like_python_tools_do(
    tmp_path: Path, pki: Pki, good: MockUpstream, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, pki.ca_file if variable == "SSL_CERT_FILE" else pki.ca_dir)
    with ThreadedProxy(settings_for(tmp_path, good.url)) as proxy:
        assert post_chat(proxy).status_code == 200


def test_the_system_store_is_added_on_request(pki: Pki, tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path, upstream_ca_file=pki.ca_file)
    without = outbound_context(base, environ={}).cert_store_stats()["x509_ca"]
    system = base.model_copy(update={"upstream_trust_system_store": True})
    paths = ssl.get_default_verify_paths()
    if not Path(paths.openssl_cafile).is_file():
        pytest.skip(f"no system CA bundle at {paths.openssl_cafile}")
    with_system = outbound_context(system, environ={}).cert_store_stats()["x509_ca"]
    assert with_system > without


def test_an_unreadable_ca_file_stops_the_start(tmp_path: Path, good: MockUpstream) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    with pytest.raises(ConfigError, match=r"no-such-ca\.pem"):
        ThreadedProxy(settings_for(tmp_path, good.url, upstream_ca_file=missing)).start()
