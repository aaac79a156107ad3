"""The relay guard on IPv6 forms that carry an IPv4 address inside (issue 10, item 11).

Each form is judged by the IPv4 address it reaches: ``64:ff9b::7f00:1`` is 127.0.0.1 through a
NAT64 gateway, ``2002:a9fe:a9fe::`` is the 6to4 relay of 169.254.169.254 (cloud metadata).
"""

from __future__ import annotations

import pytest

from llmtap.proxy.routing import is_public_address

EMBEDDED = [
    # IPv4-mapped
    ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:8.8.8.8", True),
    # IPv4-compatible (deprecated)
    ("::127.0.0.1", False),
    ("::169.254.169.254", False),
    ("::10.0.0.1", False),
    ("::8.8.8.8", True),
    # IPv4-translated (SIIT)
    ("::ffff:0:127.0.0.1", False),
    ("::ffff:0:192.168.1.1", False),
    ("::ffff:0:8.8.8.8", True),
    # NAT64 well-known prefix
    ("64:ff9b::127.0.0.1", False),
    ("64:ff9b::7f00:1", False),
    ("64:ff9b::a9fe:a9fe", False),
    ("64:ff9b::10.1.2.3", False),
    ("64:ff9b::8.8.8.8", True),
    # NAT64 local-use prefix: whatever it maps to is the operator's network
    ("64:ff9b:1::8.8.8.8", False),
    ("64:ff9b:1:abcd::1", False),
    # 6to4: bits 16-48 are the IPv4 address
    ("2002:7f00:1::", False),
    ("2002:a9fe:a9fe::1", False),
    ("2002:c0a8:101::1", False),
    ("2002:0a00:0001:1::1", False),
    ("2002:808:808::1", True),
    # Teredo: the IPv4 inside is obfuscated and the path goes through a relay: never public
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    ("2001::1", False),
    # plain IPv6, unchanged
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fc00::1", False),
    ("fd12:3456::1", False),
    ("ff02::1", False),
    ("2606:4700::1111", True),
    ("2001:4860:4860::8888", True),
    ("fe80::1%eth0", False),
    # plain IPv4, unchanged
    ("8.8.8.8", True),
    ("127.0.0.1", False),
    ("169.254.169.254", False),
    ("100.64.0.1", False),
    ("0.0.0.0", False),
    ("224.0.0.1", False),
]


@pytest.mark.parametrize(("address", "public"), EMBEDDED)
def test_embedded_ipv4_is_judged_by_the_ipv4(address: str, public: bool) -> None:
    assert is_public_address(address) is public
