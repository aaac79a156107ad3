"""An IPv6 literal as the provider's address: the request reaches it with a bracketed ``Host``
(RFC 9110 §7.2: ``[2001:db8::1]:8080``), whether it is named by ``Helicone-Target-URL``, a
route, or the base URL (issue 10, item 11)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from support.raw_upstream import RawConnection, RawUpstream, response


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")


async def echo_host(conn: RawConnection) -> None:
    while (request := await conn.read_request()) is not None:
        host = request.header(b"host") or b""
        path = request.head.split(b" ", 2)[1]
        await conn.send(response(b'{"host":"%s","path":"%s"}' % (host, path)))


@pytest.fixture
def upstream() -> Iterator[RawUpstream]:
    with RawUpstream(echo_host, host="::1") as raw:
        yield raw


def test_ipv6_literal_upstreams_get_a_bracketed_host_header(
    tmp_path: Path, upstream: RawUpstream
) -> None:
    authority = f"[::1]:{upstream.port}"
    settings = Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=upstream.url,
        anthropic_base_url=upstream.url,
        routes={"local": upstream.url + "/base"},
        allowed_target_hosts=[authority],
        allow_private_targets=True,
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with ThreadedProxy(settings) as proxy:
        cases = {
            "/v1/chat/completions": ({}, "/v1/chat/completions"),
            "/router/local/v1/chat/completions": ({}, "/base/v1/chat/completions"),
            "/v1/embeddings": (
                {"Helicone-Target-URL": f"http://{authority}"},
                "/v1/embeddings",
            ),
        }
        for path, (headers, upstream_path) in cases.items():
            reply = httpx.post(proxy.url + path, json=body, headers=headers, timeout=10)
            assert reply.status_code == 200, (path, reply.text)
            assert reply.json() == {"host": authority, "path": upstream_path}
