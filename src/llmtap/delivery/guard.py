"""Where a delivery may go: the proxy's rule (``llmtap.addresses``) applied to webhook and
PostHog URLs.

A URL is checked when it is configured (a clear 400 for the user) and again on every send,
after resolving its name: the connection goes to the address that passed, so a name that
resolved to a public address when it was saved and to 127.0.0.1 now (DNS rebinding) is refused.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from llmtap.addresses import is_public_address

MAX_URL_LENGTH = 2048


class TargetRefused(Exception):
    """The URL is malformed or reaches an address deliveries may not go to."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str
    """Path and query, as sent on the request line."""

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_endpoint(url: str) -> Endpoint:
    """``http(s)://host[:port][/path]``, without user info or fragment; ``TargetRefused``."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise TargetRefused("the URL holds whitespace or control characters")
    if not url.isascii():
        # http.client would write a non-ASCII host as raw Latin-1 in the Host header and fail
        # on a non-ASCII path at every send; full-width dots would also slip past the check
        raise TargetRefused(
            "the URL must be ASCII: write an international name in its xn-- form and "
            "percent-encode the path"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("the URL is malformed") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("the URL must be http(s)://host[:port][/path]")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not hold a user name or password")
    if parts.fragment:
        raise TargetRefused("the URL must not hold a fragment")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Endpoint(
        scheme=parts.scheme,
        host=parts.hostname.lower(),
        port=port or (443 if parts.scheme == "https" else 80),
        path=path,
    )


def resolve(endpoint: Endpoint, allow_private: bool) -> str:
    """The address to connect to: every address the host resolves to must be public unless
    ``allow_private``; ``TargetRefused`` otherwise (also when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"{endpoint.host!r} does not resolve") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"{endpoint.host!r} does not resolve")
    if not allow_private:
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise TargetRefused(
                f"{endpoint.host!r} resolves to a private, loopback, link-local or metadata "
                f"address ({', '.join(sorted(set(private)))}); deliveries may not go there"
            )
    return addresses[0]


def check_new_url(url: str, allow_private: bool) -> Endpoint:
    """A URL a user wants to deliver to: well-formed, and not (now) a private address. A name
    that does not resolve yet is accepted (it is checked again on every send)."""
    endpoint = parse_endpoint(url)
    try:
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        try:
            resolve(endpoint, allow_private)
        except TargetRefused as exc:
            if "does not resolve" not in str(exc):
                raise
        return endpoint
    resolve(endpoint, allow_private)
    return endpoint
