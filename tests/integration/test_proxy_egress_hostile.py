"""The proxy's asyncio tunnel (``llmtap.proxy.egress.open_tunnel``) with the shared CONNECT
check: a host that is not a plain name or address is never written on the CONNECT line (it would
add lines to a request carrying the proxy's credentials), and a refusal with a page is named by
its status. Real sockets on 127.0.0.1; a raw socket plays the proxy."""

from __future__ import annotations

import asyncio
import socket

import pytest

from llmtap.outbound.egress import parse_proxy_url
from llmtap.proxy.egress import EgressError, open_tunnel
from support.hostile_peer import RawServer


def refuse_with_a_page(conn: socket.socket, server: RawServer) -> None:
    conn.sendall(
        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 11\r\n\r\n<h1>no</h1>"
    )


def tunnel(port: int, host: str) -> str:
    async def run() -> str:
        proxy = parse_proxy_url(f"http://user:pw@127.0.0.1:{port}", "test")
        with pytest.raises(EgressError) as failed:
            await asyncio.wait_for(
                open_tunnel(asyncio.get_running_loop(), proxy, host, 443, 8192), 5
            )
        return str(failed.value)

    return asyncio.run(run())


@pytest.mark.parametrize("host", ["api.openai.com\r\nX-Injected: 1", "\u00e4pi.openai.com"])
def test_a_host_that_is_not_plain_is_refused_before_connecting(host: str) -> None:
    with RawServer(refuse_with_a_page) as proxy:
        message = tunnel(proxy.port, host)
    assert "for that address: not a plain host" in message
    assert proxy.got == []


def test_a_refusal_with_a_page_is_named_by_its_status() -> None:
    with RawServer(refuse_with_a_page) as proxy:
        message = tunnel(proxy.port, "api.openai.com")
    assert "answered 407 Proxy Authentication Required to CONNECT api.openai.com:443" in message
    assert "user" not in message and "pw@" not in message


def test_a_status_that_only_looks_numeric_is_not_http(caplog: pytest.LogCaptureFixture) -> None:
    def serve(conn: socket.socket, server: RawServer) -> None:
        conn.sendall(b"HTTP/1.1 \xb200 OK\r\n\r\n")
        server.stopped.wait(1)

    with RawServer(serve) as proxy:
        message = tunnel(proxy.port, "api.openai.com")
    assert "answered CONNECT with something that is not HTTP" in message
    assert "Traceback" not in caplog.text and "ValueError" not in caplog.text
