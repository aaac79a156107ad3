"""llmtap's own listeners over HTTPS (``proxy_tls_*`` and ``api_tls_*``), for teams without a
load balancer in front: clients trusting the test CA get through, the others are refused."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.api_backend import ApiBackend
from support.tls import Pki

PROMPT: Any = [{"role": "user", "content": "hello listener"}]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def test_the_proxy_serves_https_with_its_certificate(
    tmp_path: Path, pki: Pki, mock: MockUpstream
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock.url,
        proxy_tls_cert_file=pki.server.cert_file,
        proxy_tls_key_file=pki.server.key_file,
    )
    with ThreadedProxy(settings) as proxy:
        assert proxy.url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=pki.client_context()) as http:
            client = openai.OpenAI(
                base_url=proxy.url + "/v1", api_key="k", max_retries=0, http_client=http
            )
            assert client.chat.completions.create(model="m", messages=PROMPT).choices
            stream = client.chat.completions.create(model="m", messages=PROMPT, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(proxy.url + "/_llmtap/health", verify=ssl.create_default_context())
        with pytest.raises(httpx.HTTPError):  # no clear-text answers on the TLS port
            httpx.get(f"http://127.0.0.1:{proxy.port}/_llmtap/health", timeout=5)


def test_the_api_serves_https_with_its_certificate(tmp_path: Path, pki: Pki) -> None:
    with ApiBackend(
        tmp_path / "data",
        analytics=False,
        api_tls_cert_file=pki.server.cert_file,
        api_tls_key_file=pki.server.key_file,
    ) as backend:
        assert backend.url.startswith("https://")
        answered = httpx.get(backend.url + "/v1/health", verify=pki.client_context())
        assert answered.status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(backend.url + "/v1/health", verify=ssl.create_default_context())


@pytest.mark.parametrize("side", ["proxy", "api"])
def test_a_certificate_without_its_key_is_refused(tmp_path: Path, pki: Pki, side: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="go together"):
        Settings(data_dir=tmp_path, **{f"{side}_tls_cert_file": pki.server.cert_file})
