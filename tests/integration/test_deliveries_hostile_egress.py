"""Deliveries against a hostile egress proxy, a hostile webhook owner and hostile URLs
(docs/tls.md, "Webhook, alert and PostHog deliveries"; docs/integrations.md, "Where a webhook may
point").

Each send must end, within the delivery timeout, as a named ``SendFailed`` (the worker's retry
and backoff handle it); nothing else may escape ``post``, so no send goes unrecorded. Real
sockets on 127.0.0.1: a raw socket plays the proxy or the endpoint.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from llmtap.delivery.guard import Endpoint, TargetRefused, check_new_url, parse_endpoint
from llmtap.delivery.http_post import SendFailed, post
from llmtap.outbound.egress import parse_proxy_url
from llmtap.outbound.trust import outbound_context
from llmtap.settings import Settings
from support.hostile_peer import RawServer, drip
from support.probes import wait_for

BODY = b'{"request_id": "r-1"}'
TIMEOUT_S = 0.5
"""A dripping peer goes on for 4 s (support.hostile_peer.drip): a send must end long before."""


def send(endpoint: Endpoint, address: str, via_port: int | None) -> tuple[SendFailed, float]:
    via = None if via_port is None else parse_proxy_url(f"http://127.0.0.1:{via_port}", "test")
    started = time.monotonic()
    with pytest.raises(SendFailed) as failed:
        post(endpoint, address, BODY, {}, TIMEOUT_S, outbound_context(Settings(), environ={}), via)
    return failed.value, time.monotonic() - started


# the egress tests choose their proxy themselves, never the environment's
pytestmark = pytest.mark.usefixtures("no_proxy_environment")


# -- a slow proxy or endpoint is bounded by the delivery timeout, not by each read -------------


def test_a_slow_loris_answer_to_connect_ends_within_the_delivery_timeout() -> None:
    with RawServer(drip(b"HTTP/1.1 200 OK\r\nX-Pad: ")) as proxy:
        failed, took = send(parse_endpoint("http://hooks.example/hook"), "203.0.113.9", proxy.port)
    assert took < TIMEOUT_S + 2.0, f"the send took {took:.1f}s"
    assert str(failed) == f"no answer within {TIMEOUT_S:g}s"


@pytest.mark.parametrize(
    "serve",
    [
        drip(b"HTTP/1.1 200 OK\r\nX-Pad: "),
        # http.client skips any number of interim answers: each one restarts its wait
        drip(b"", every_s=0.01, piece=b"HTTP/1.1 100 Continue\r\n\r\n"),
    ],
    ids=["header-byte-by-byte", "endless-100-continue"],
)
def test_a_slow_loris_answer_from_the_endpoint_ends_within_the_delivery_timeout(
    serve: Callable[..., None],
) -> None:
    with RawServer(serve) as endpoint:
        failed, took = send(
            parse_endpoint(f"http://127.0.0.1:{endpoint.port}/hook"), "127.0.0.1", None
        )
    assert took < TIMEOUT_S + 2.0, f"the send took {took:.1f}s"
    assert str(failed) == f"no answer within {TIMEOUT_S:g}s"


def test_a_slow_loris_tls_handshake_through_the_tunnel_ends_within_the_delivery_timeout() -> None:
    def serve(conn: socket.socket, server: RawServer) -> None:
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        conn.recv(65536)  # the ClientHello; a TLS record header, then a byte at a time
        drip(b"\x16\x03\x03\x40\x00")(conn, server)

    with RawServer(serve) as proxy:
        failed, took = send(parse_endpoint("https://hooks.example/hook"), "203.0.113.9", proxy.port)
    assert took < TIMEOUT_S + 2.0, f"the send took {took:.1f}s"
    assert str(failed) == f"no answer within {TIMEOUT_S:g}s"


# -- a refusal with a body is named by its status ----------------------------------------------


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 9\r\n"
            b"Proxy-Authenticate: Basic\r\n\r\n<h1>no</h1>",
            "answered 407 Proxy Authentication Required to CONNECT",
        ),
        (
            b"HTTP/1.1 302 Found\r\nLocation: http://login.corp/\r\nContent-Length: 3\r\n\r\nbye",
            "answered 302 Found to CONNECT",
        ),
        (
            b"HTTP/1.1 403 \x1b[31mRed\x00\r\n\r\n",  # escapes are not for the history or logs
            "answered 403 ?[31mRed? to CONNECT",
        ),
    ],
)
def test_a_refusal_with_a_body_is_named_by_its_status(answer: bytes, named: str) -> None:
    def serve(conn: socket.socket, server: RawServer) -> None:
        conn.sendall(answer)  # in one write: squid and most proxies send an HTML page

    with RawServer(serve) as proxy:
        failed, _ = send(parse_endpoint("http://hooks.example/hook"), "203.0.113.9", proxy.port)
    assert named in str(failed)
    assert proxy.got[0].startswith(b"CONNECT 203.0.113.9:80 HTTP/1.1\r\n")


# -- URLs that cannot be written on a request line are refused, never crash a send ------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/h\u00f6ok",
        "http://127.0.0.1:9/hook?name=\u2603",
        "http://h\u00f6oks.example/hook",
        "http://hooks.example\u3002evil/hook",
    ],
)
def test_a_url_that_is_not_ascii_is_refused_when_saved_and_when_sent(url: str) -> None:
    with pytest.raises(TargetRefused, match="ASCII"):
        check_new_url(url, allow_private=True)
    with pytest.raises(TargetRefused, match="ASCII"):
        parse_endpoint(url)


@pytest.mark.parametrize(
    "endpoint",
    [
        Endpoint("http", "127.0.0.1", 9, "/h\u00f6ok"),
        Endpoint("http", "h\u00f6oks.example", 9, "/hook"),
        Endpoint("http", "hooks.example", 9, "/hook\r\nX-Injected: 1"),
    ],
)
def test_a_send_to_an_unwritable_endpoint_is_a_named_failure(endpoint: Endpoint) -> None:
    # an endpoint stored before the check above (or built elsewhere) still only fails its send
    with RawServer(lambda conn, server: None) as target:
        failed, _ = send(
            Endpoint(endpoint.scheme, endpoint.host, target.port, endpoint.path), "127.0.0.1", None
        )
    assert str(failed).startswith("the request could not be written")
    assert all(b"X-Injected" not in got for got in target.got)


# -- the CONNECT line carries the checked address only, never a header ------------------------


@pytest.mark.parametrize(
    "address",
    ["203.0.113.9\r\nX-Injected: 1", "203.0.113.9 HTTP/1.1\nX-Injected: 1", "h\u00f6oks.example"],
)
def test_an_authority_that_is_not_a_plain_host_is_never_written_into_connect(
    address: str,
) -> None:
    def serve(conn: socket.socket, server: RawServer) -> None:
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")

    with RawServer(serve) as proxy:
        failed, _ = send(parse_endpoint("http://hooks.example/hook"), address, proxy.port)
        wait_for(lambda: not proxy.busy(), timeout_s=5, what="the proxy's connections ended")
    assert "for that address: not a plain host" in str(failed)
    assert all(b"X-Injected" not in got and b"\xc3" not in got for got in proxy.got)


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 \xb200 OK", b"HTTP/1.1 2\xb30 OK", b"HTTP/1.1 -200 OK", b"HTTP/1.1 +20 OK"],
)
def test_a_status_that_only_looks_numeric_is_not_http(status_line: bytes) -> None:
    def serve(conn: socket.socket, server: RawServer) -> None:
        conn.sendall(status_line + b"\r\n\r\n")

    with RawServer(serve) as proxy:
        failed, _ = send(parse_endpoint("http://hooks.example/hook"), "203.0.113.9", proxy.port)
    assert "answered CONNECT with something that is not HTTP" in str(failed)
