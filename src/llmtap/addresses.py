"""Which resolved addresses are on the public internet: the one rule behind every guard that
keeps llmtap from reaching inside its own network (the proxy's relay guard, invariant 8, and the
webhook and PostHog deliveries). It lives at the bottom so both can import it.
"""

from __future__ import annotations

import ipaddress

# IPv6 ranges that reach an address we cannot judge from here: the NAT64 local-use prefix maps to
# whatever the operator's network puts behind it, and Teredo hides its IPv4 behind a relay.
_NEVER_PUBLIC_V6 = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("2001::/32"),
)
# Prefixes whose last 32 bits are an IPv4 address: IPv4-compatible (::a.b.c.d, deprecated),
# IPv4-translated (::ffff:0:a.b.c.d) and the NAT64 well-known prefix (64:ff9b::a.b.c.d).
_LOW_32_IS_IPV4 = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
)


def is_public_address(address: str) -> bool:
    """Whether a resolved address is on the public internet; an IPv6 form that carries an IPv4
    address (mapped, compatible, translated, NAT64, 6to4) is judged by that IPv4 address."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _NEVER_PUBLIC_V6):
            return False
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif any(ip in net for net in _LOW_32_IS_IPV4):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast
