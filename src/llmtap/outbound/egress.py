"""Which egress proxy an outbound connection goes through, decided once at start (docs/tls.md).

Outbound connections are the proxy's to providers and the delivery worker's to webhook, alert and
PostHog endpoints; both read the same settings:

* ``upstream_proxy_url`` when set, for every destination; else, when ``trust_env_proxy``,
  ``HTTPS_PROXY`` for ``https://`` destinations and ``HTTP_PROXY`` for ``http://`` ones (lower-case
  names first, then upper-case, then ``ALL_PROXY``), as curl and the Python HTTP clients read them;
* never for a host matched by ``upstream_no_proxy`` or ``NO_PROXY``.

Every destination, plain HTTP too, goes through a CONNECT tunnel asked for the address the
private-address rule checked (decision 2026-12-01-egress-proxy.md). Proxy credentials come from
the URL's user info and are sent as ``Proxy-Authorization: Basic``; they are never logged nor put
in an error message (``EgressProxy.display`` has none). The CONNECT request and the check of its
answer live here, once, for the proxy's asyncio tunnel and the delivery worker's blocking one.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from llmtap.errors import ConfigError
from llmtap.settings import Settings


@dataclass(frozen=True, slots=True)
class EgressProxy:
    host: str
    port: int
    authorization: bytes | None = field(default=None, repr=False)
    """``Basic <base64>`` from the URL's user info; never shown."""

    @property
    def display(self) -> str:
        """The proxy without its credentials, for messages and logs."""
        return f"http://{bracketed(self.host)}:{self.port}"


def bracketed(host: str) -> str:
    """An IPv6 address in brackets, as it is written before a port."""
    return f"[{host}]" if ":" in host else host


def parse_proxy_url(url: str, source: str) -> EgressProxy:
    """``http://[user:password@]host[:port]`` (a bare ``host:port`` is taken as ``http://``)."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port or 80
    except ValueError as exc:
        raise ConfigError(f"{source}: malformed proxy URL") from exc
    if parts.scheme != "http" or not parts.hostname:
        # the message must not echo the URL: it may hold a password
        raise ConfigError(
            f"{source}: the egress proxy must be http://[user:password@]host:port "
            f"(scheme {parts.scheme!r} is not supported)"
        )
    authorization = None
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(user_pass.encode())
    return EgressProxy(parts.hostname.lower(), port, authorization)


class NoProxy:
    """Hosts reached directly (``NO_PROXY`` syntax): ``example.com`` and ``.example.com`` match
    the name and its subdomains, ``host:port`` that port only, ``*`` everything, an IP address or
    CIDR range the addresses written in it."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.everything = False
        self._names: set[tuple[str, int | None]] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self.everything = True
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name, port = entry, None
            if entry.count(":") == 1 and entry.rsplit(":", 1)[1].isdigit():
                name, port_text = entry.rsplit(":", 1)
                port = int(port_text)
            self._names.add((name.lstrip("*").lstrip("."), port))

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and any(address in net for net in self._networks):
            return True
        for name, only_port in self._names:
            if only_port is not None and only_port != port:
                continue
            if host == name or host.endswith("." + name):
                return True
        return False


def _from_env(environ: Mapping[str, str], scheme: str) -> tuple[str, str] | None:
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = environ.get(name, "").strip()
        if value:
            return value, name
    return None


class Egress:
    """Which egress proxy, if any, an outbound connection goes through."""

    def __init__(
        self, http: EgressProxy | None, https: EgressProxy | None, bypass: NoProxy
    ) -> None:
        self._by_scheme = {"http": http, "https": https}
        self._bypass = bypass

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] = os.environ
    ) -> Egress | None:
        """None when no proxy is configured: the direct path then pays nothing."""
        bypass_entries = list(settings.upstream_no_proxy)
        http: EgressProxy | None = None
        https: EgressProxy | None = None
        if settings.upstream_proxy_url:
            proxy = parse_proxy_url(settings.upstream_proxy_url, "LLMTAP_UPSTREAM_PROXY_URL")
            http = https = proxy
        elif settings.trust_env_proxy:
            if found := _from_env(environ, "http"):
                http = parse_proxy_url(*found)
            if found := _from_env(environ, "https"):
                https = parse_proxy_url(*found)
        else:
            return None
        if settings.trust_env_proxy:
            for name in ("no_proxy", "NO_PROXY"):
                bypass_entries.extend(environ.get(name, "").split(","))
        if http is None and https is None:
            return None
        return cls(http, https, NoProxy(bypass_entries))

    def describe(self) -> str:
        """Which proxy serves which scheme, without credentials (for the start-up log)."""
        return ", ".join(
            f"{scheme}:// via {proxy.display}"
            for scheme, proxy in self._by_scheme.items()
            if proxy is not None
        )

    def proxy_for(self, scheme: str, host: str, port: int) -> EgressProxy | None:
        proxy = self._by_scheme.get(scheme)
        if proxy is None or self._bypass.matches(host, port):
            return None
        return proxy


class UnwritableAuthority(ValueError):
    """A host that cannot be written on the CONNECT line as it is (not a plain ASCII name or
    address): writing it would let it add lines of its own to a request that carries the
    proxy's credentials."""


def connect_request(proxy: EgressProxy, host: str, port: int) -> bytes:
    """The CONNECT request for ``host:port`` (a name, or the address the guard checked);
    ``UnwritableAuthority`` when ``host`` is not one."""
    if not host or not all(c.isascii() and (c.isalnum() or c in ".-_:%") for c in host):
        raise UnwritableAuthority(host)
    authority = authority_of(host, port).encode()
    request = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (authority, authority)
    if proxy.authorization is not None:
        request += b"Proxy-Authorization: " + proxy.authorization + b"\r\n"
    return request + b"\r\n"


def authority_of(host: str, port: int) -> str:
    return f"{bracketed(host)}:{port}"


def connect_reply_problem(received: bytes, max_head_bytes: int) -> str | None:
    """What is wrong with the proxy's answer to CONNECT so far: None when it is a complete 2xx
    head, ``""`` when more bytes are needed, else the problem in a few words."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        return (
            "answered CONNECT with a head larger than the limit"
            if (len(received) > max_head_bytes)
            else ""
        )
    status_line = received.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    # three ASCII digits: str.isdigit() also takes "²" (Latin-1), which int() refuses
    code = parts[1] if len(parts) >= 2 else ""
    if not parts[0].startswith("HTTP/1.") or not (
        len(code) == 3 and code.isascii() and code.isdigit()
    ):
        return "answered CONNECT with something that is not HTTP"
    if not 200 <= int(code) < 300:
        # a refusal usually comes with a page (a 407's body): named by its status, whether the
        # body came in the same read or not; only printable ASCII goes into the message
        reason = "".join(c if " " <= c <= "~" else "?" for c in status_line[len(parts[0]) + 1 :])
        return f"answered {reason[:80]} to CONNECT"
    if end + 4 != len(received):
        # nothing may come before our first byte through the tunnel (TLS or HTTP: we speak
        # first); bytes here would be read as the destination's
        return "sent bytes after its answer to CONNECT"
    return None
