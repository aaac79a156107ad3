"""One POST to an endpoint, connected to the address the guard checked (never re-resolved).

The standard library's ``http.client``: one request per connection (deliveries to one endpoint
are few and spread out), the TLS name checked against the URL's host, the answer read within a
cap and thrown away. Anything that goes wrong is a ``SendFailed`` with a short reason for the
delivery history; nothing here raises anything else.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass

from llmtap.delivery.guard import Endpoint

_MAX_ANSWER_BYTES = 64 * 1024


class SendFailed(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class Answer:
    status: int


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, endpoint: Endpoint, address: str, timeout: float) -> None:
        super().__init__(endpoint.host, endpoint.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    def __init__(
        self, endpoint: Endpoint, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(endpoint, address, timeout)
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
) -> Answer:
    """POST ``body``; the answer when it is 2xx, ``SendFailed`` otherwise."""
    conn: _PinnedHTTP = (
        _PinnedHTTPS(endpoint, address, timeout_s, tls)
        if endpoint.scheme == "https"
        else _PinnedHTTP(endpoint, address, timeout_s)
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
    except ssl.SSLError as exc:
        raise SendFailed(f"TLS failed: {exc.reason or type(exc).__name__}") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SendFailed(f"connection failed: {reason}") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise SendFailed(f"answered {status}", status)
    return Answer(status)
