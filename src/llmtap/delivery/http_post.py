"""One POST to an endpoint, connected to the address the guard checked (never re-resolved).

The standard library's ``http.client``: one request per connection (deliveries to one endpoint
are few and spread out), the TLS name checked against the URL's host, the answer read within a
cap and thrown away. Through an egress proxy (``llmtap.outbound.egress``, the proxy's settings)
the connection is a CONNECT tunnel asked for that checked address, as for provider calls. Anything
that goes wrong is a ``SendFailed`` with a short reason for the delivery history; nothing here
raises anything else.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass

from llmtap.delivery.guard import Endpoint
from llmtap.outbound.egress import (
    EgressProxy,
    authority_of,
    connect_reply_problem,
    connect_request,
)
from llmtap.outbound.trust import describe_tls_error

_MAX_ANSWER_BYTES = 64 * 1024
_MAX_CONNECT_HEAD_BYTES = 8 * 1024


class SendFailed(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class Answer:
    status: int


class _EgressRefused(Exception):
    """The egress proxy could not be reached or refused the tunnel (its words, no secrets)."""


def _tunnel(via: EgressProxy, address: str, port: int, timeout: float | None) -> socket.socket:
    try:
        sock = socket.create_connection((via.host, via.port), timeout)
    except OSError as exc:
        raise _EgressRefused(
            f"cannot reach egress proxy {via.display}: {exc.strerror or exc}"
        ) from None
    try:
        sock.sendall(connect_request(via, address, port))
        received = b""
        while (problem := connect_reply_problem(received, _MAX_CONNECT_HEAD_BYTES)) == "":
            # one byte at a time past the blank line would be wasteful; reading up to the
            # limit may take the destination's first bytes, which the check then refuses
            chunk = sock.recv(_MAX_CONNECT_HEAD_BYTES + 1 - len(received))
            if not chunk:
                problem = "closed the connection before answering CONNECT"
                break
            received += chunk
    except BaseException:
        sock.close()
        raise
    if problem is not None:
        sock.close()
        raise _EgressRefused(f"egress proxy {via.display} {problem} {authority_of(address, port)}")
    return sock


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(
        self, endpoint: Endpoint, address: str, timeout: float, via: EgressProxy | None
    ) -> None:
        super().__init__(endpoint.host, endpoint.port, timeout=timeout)
        self._address = address
        self._via = via

    def connect(self) -> None:
        if self._via is None:
            self.sock = socket.create_connection((self._address, self.port), self.timeout)
        else:
            self.sock = _tunnel(self._via, self._address, self.port, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    def __init__(
        self,
        endpoint: Endpoint,
        address: str,
        timeout: float,
        via: EgressProxy | None,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(endpoint, address, timeout, via)
        self._context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def post(
    endpoint: Endpoint,
    address: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    tls: ssl.SSLContext,
    via: EgressProxy | None = None,
) -> Answer:
    """POST ``body`` (through the egress proxy ``via`` when given); the answer when it is 2xx,
    ``SendFailed`` otherwise."""
    conn: _PinnedHTTP = (
        _PinnedHTTPS(endpoint, address, timeout_s, via, tls)
        if endpoint.scheme == "https"
        else _PinnedHTTP(endpoint, address, timeout_s, via)
    )
    try:
        conn.putrequest("POST", endpoint.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", endpoint.host_header)
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Connection", "close")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        response.read(_MAX_ANSWER_BYTES)
        status = response.status
    except TimeoutError:
        raise SendFailed(f"no answer within {timeout_s:g}s") from None
    except _EgressRefused as exc:
        raise SendFailed(str(exc)) from None
    except ssl.SSLError as exc:
        raise SendFailed(f"TLS failed: {describe_tls_error(exc)}") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SendFailed(f"connection failed: {reason}") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise SendFailed(f"answered {status}", status)
    return Answer(status)
