"""Provider connections through a corporate egress proxy (HTTP CONNECT), docs/tls.md.

A CONNECT proxy on 127.0.0.1 (``support.connect_proxy``) records what it was asked for; the mock
upstream behind it serves TLS from the test CA (and plain HTTP for one case).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmtap.errors import ConfigError
from llmtap.outbound.egress import NoProxy
from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.connect_proxy import ConnectProxy
from support.probes import wait_for
from support.processes import free_port
from support.tls import Pki, TrustedMock

PROMPT: Any = [{"role": "user", "content": "hello through the proxy"}]
CHAT = {"model": "gpt-4o-mini", "messages": PROMPT}
USER, PASSWORD = "alice", "s3cret-pa:ss"  # a colon in the password, percent-encoded in the URL
PASSWORD_IN_URL = "s3cret-pa%3Ass"


@pytest.fixture(scope="module")
def tls_mock(pki: Pki) -> Iterator[MockUpstream]:
    with TrustedMock(pki) as mock:
        yield mock


# the egress tests choose their proxy themselves, never the environment's
pytestmark = pytest.mark.usefixtures("no_proxy_environment")


def settings_for(tmp_path: Path, mock: MockUpstream, pki: Pki, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock.url,
        anthropic_base_url=mock.url,
        upstream_ca_file=pki.ca_file,
        **overrides,
    )


def post_chat(proxy: ThreadedProxy, stream: bool = False, **headers: str) -> httpx.Response:
    return httpx.post(
        proxy.url + "/v1/chat/completions",
        json={**CHAT, "stream": stream},
        headers={"authorization": "Bearer k", **headers},
        timeout=30,
        trust_env=False,  # the *_PROXY variables set here are for llmtap, not this client
    )


def test_calls_tunnel_through_the_proxy_with_basic_auth_and_tls_inside(
    tmp_path: Path, pki: Pki, tls_mock: MockUpstream
) -> None:
    names_before = len(tls_mock.server_names)
    with ConnectProxy(credentials=(USER, PASSWORD)) as egress:
        url = f"http://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{egress.port}"
        settings = settings_for(tmp_path, tls_mock, pki, upstream_proxy_url=url)
        with ThreadedProxy(settings) as proxy:
            client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0)
            for _ in range(3):
                assert client.chat.completions.create(**CHAT).choices[0].message.content
                # read to the chunked body's end: the SDK stops at [DONE] and may close the
                # connection before the end reached the proxy, which then drops the upstream one
                streamed = post_chat(proxy, stream=True)
                assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
                wait_for(lambda: len(proxy.upstream_pool.idle_connections()) == 1, what="pool")
        seen = list(egress.seen)
    assert [s.target for s in seen] == [f"localhost:{tls_mock.port}"]  # one tunnel, reused
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert seen[0].proxy_authorization == expected
    assert tls_mock.server_names[names_before:] == ["localhost"]  # SNI inside the tunnel


def test_wrong_proxy_credentials_are_a_502_that_never_shows_them(
    tmp_path: Path, pki: Pki, tls_mock: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        ConnectProxy(credentials=(USER, PASSWORD)) as egress,
        caplog.at_level(logging.DEBUG),
    ):
        url = f"http://{USER}:wrong-{PASSWORD_IN_URL}@127.0.0.1:{egress.port}"
        with ThreadedProxy(settings_for(tmp_path, tls_mock, pki, upstream_proxy_url=url)) as proxy:
            answered = post_chat(proxy)
    assert answered.status_code == 502
    error = answered.json()["error"]
    assert error["code"] == "upstream_proxy_error"
    assert "407 Proxy Authentication Required" in error["message"]
    assert f"127.0.0.1:{egress.port}" in error["message"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "upstream_proxy_error" in logged
    for secret in (PASSWORD, PASSWORD_IN_URL, "wrong-"):
        assert secret not in answered.text
        assert secret not in logged


def test_an_unreachable_proxy_is_a_502(tmp_path: Path, pki: Pki, tls_mock: MockUpstream) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with ThreadedProxy(settings_for(tmp_path, tls_mock, pki, upstream_proxy_url=url)) as proxy:
        answered = post_chat(proxy)
    assert answered.status_code == 502
    assert answered.json()["error"]["code"] == "upstream_proxy_error"
    assert "cannot reach egress proxy" in answered.json()["error"]["message"]


def test_the_environment_names_the_proxy_and_no_proxy_bypasses_it(
    tmp_path: Path, pki: Pki, tls_mock: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectProxy() as egress:
        monkeypatch.setenv("HTTPS_PROXY", egress.url)
        with ThreadedProxy(settings_for(tmp_path, tls_mock, pki)) as proxy:
            assert post_chat(proxy).status_code == 200
        assert egress.targets() == [f"localhost:{tls_mock.port}"]

        monkeypatch.setenv("NO_PROXY", "example.com,.localhost")
        with ThreadedProxy(settings_for(tmp_path / "b", tls_mock, pki)) as proxy:
            assert post_chat(proxy).status_code == 200
        monkeypatch.delenv("NO_PROXY")
        with ThreadedProxy(
            settings_for(tmp_path / "c", tls_mock, pki, trust_env_proxy=False)
        ) as proxy:
            assert post_chat(proxy).status_code == 200
        assert len(egress.targets()) == 1  # neither of the last two went through it


def test_the_setting_wins_over_the_environment(
    tmp_path: Path, pki: Pki, tls_mock: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectProxy() as from_env, ConnectProxy() as from_setting:
        monkeypatch.setenv("HTTPS_PROXY", from_env.url)
        settings = settings_for(tmp_path, tls_mock, pki, upstream_proxy_url=from_setting.url)
        with ThreadedProxy(settings) as proxy:
            assert post_chat(proxy).status_code == 200
        assert from_env.targets() == []
        assert from_setting.targets() == [f"localhost:{tls_mock.port}"]


def test_plain_http_upstreams_are_tunnelled_too(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MockUpstream() as plain, ConnectProxy() as egress:
        monkeypatch.setenv("HTTP_PROXY", egress.url)
        with ThreadedProxy(settings_for(tmp_path, plain, pki)) as proxy:
            for _ in range(2):
                assert post_chat(proxy).status_code == 200
        assert egress.targets() == [f"127.0.0.1:{plain.port}"]
        assert len(plain.requests) == 2


def test_the_private_address_guard_still_applies_to_the_final_target(
    tmp_path: Path, pki: Pki, tls_mock: MockUpstream
) -> None:
    """A caller-named target is checked before any tunnel is asked for: the proxy never sees a
    CONNECT to an address the guard refused."""
    with ConnectProxy() as egress:
        settings = settings_for(
            tmp_path,
            tls_mock,
            pki,
            upstream_proxy_url=egress.url,
            allowed_target_hosts=[f"localhost:{tls_mock.port}"],
        )
        with ThreadedProxy(settings) as proxy:
            refused = post_chat(proxy, **{"Helicone-Target-URL": tls_mock.url})
            unlisted = post_chat(proxy, **{"Helicone-Target-URL": "https://intranet.invalid"})
        assert egress.targets() == []
    assert refused.status_code == 403
    assert "private" in refused.json()["error"]["message"]
    assert unlisted.status_code == 403


def test_a_proxy_url_with_another_scheme_stops_the_start(tmp_path: Path, pki: Pki) -> None:
    mock_url = "https://localhost:1"
    settings = Settings(
        data_dir=tmp_path,
        proxy_port=0,
        openai_base_url=mock_url,
        upstream_proxy_url="socks5://user:hunter2@127.0.0.1:1080",
    )
    with pytest.raises(ConfigError) as raised:
        ThreadedProxy(settings).start()
    assert "socks5" in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("entries", "host", "port", "bypass"),
    [
        (["example.com"], "api.example.com", 443, True),
        ([".example.com"], "example.com", 443, True),
        (["example.com"], "badexample.com", 443, False),
        (["*"], "api.openai.com", 443, True),
        (["10.0.0.0/8"], "10.1.2.3", 443, True),
        (["10.0.0.0/8"], "11.1.2.3", 443, False),
        (["api.openai.com:8443"], "api.openai.com", 443, False),
        (["api.openai.com:8443"], "api.openai.com", 8443, True),
        (["[::1]"], "::1", 443, True),
        ([" ", ""], "api.openai.com", 443, False),
    ],
)
def test_no_proxy_matching(entries: list[str], host: str, port: int, bypass: bool) -> None:
    assert NoProxy(entries).matches(host, port) is bypass
