"""Target URLs with IPv6 literals, and malformed ones: routed or refused with a 400, never an
exception out of the router (issue 10, item 11)."""

from __future__ import annotations

import pytest

from llmtap.capture.tap import split_headers
from llmtap.proxy.routing import RouteError, Router, parse_upstream
from llmtap.settings import Settings


def route_target(target: str, allowed: list[str]) -> tuple[bytes, str, int]:
    router = Router(Settings(allowed_target_hosts=allowed))
    _, tap = split_headers([(b"Helicone-Target-URL", target.encode())])
    upstream, _ = router.route(b"/v1/x", tap, [])
    return upstream.host_header, upstream.host, upstream.port


@pytest.mark.parametrize(
    ("url", "host_header", "origin"),
    [
        ("http://[2001:db8::1]:8080/v1", b"[2001:db8::1]:8080", "http://[2001:db8::1]:8080"),
        ("https://[2001:DB8::1]/v1", b"[2001:db8::1]", "https://[2001:db8::1]"),
        ("http://[::1]:80", b"[::1]", "http://[::1]"),
        ("http://10.0.0.1:8000", b"10.0.0.1:8000", "http://10.0.0.1:8000"),
        ("https://api.openai.com", b"api.openai.com", "https://api.openai.com"),
    ],
)
def test_host_header_brackets_ipv6_literals(url: str, host_header: bytes, origin: str) -> None:
    upstream = parse_upstream(url, "x", check_address=False)
    assert (upstream.host_header, upstream.origin) == (host_header, origin)


@pytest.mark.parametrize("allowed", ["[2001:db8::1]:8080", "2001:db8::1", "[2001:db8::1]"])
def test_ipv6_targets_match_the_allow_list_in_either_spelling(allowed: str) -> None:
    got = route_target("http://[2001:db8::1]:8080/", [allowed])
    assert got == (b"[2001:db8::1]:8080", "2001:db8::1", 8080)


@pytest.mark.parametrize(
    "target", ["http://[::1", "http://[::1]:99999/", "http://x:99999", "http://x:port"]
)
def test_malformed_target_urls_are_a_400(target: str) -> None:
    with pytest.raises(RouteError) as err:
        route_target(target, ["x", "[::1]", "::1"])
    assert (err.value.status, err.value.code) == (400, "invalid_target_url")
