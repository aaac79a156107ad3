"""One POST to an endpoint, connected to the address the guard checked (never re-resolved).

The standard library's ``http.client``: one request per connection (deliveries to one endpoint
are few and spread out), the TLS name checked against the URL's host, the answer read within a
cap and thrown away. The whole send, CONNECT and TLS handshake included, ends within the timeout
(``_Deadline``): a socket timeout bounds each read only, so a proxy or endpoint sending a byte at a
time would otherwise hold a sender thread as long as it liked. Through an egress proxy (``llmtap.outbound.egress``, the proxy's settings)
the connection is a CONNECT tunnel asked for that checked address, as for provider calls. Anything
that goes wrong is a ``SendFailed`` with a short reason for the delivery history; nothing here
raises anything else.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass

from llmtap.delivery.guard import Endpoint
from llmtap.outbound.egress import (
    EgressProxy,
    UnwritableAuthority,
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


class _Deadline:
    """Shuts the send's connection down when its time is up, whatever read it is blocked in.

    It holds a duplicate of the socket's descriptor: shutting that down ends the connection for
    every descriptor, also after TLS has taken the original over (``wrap_socket`` detaches it).
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._watched: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.name = "llmtap-send-deadline"

    def start(self) -> None:
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        duplicate = sock.dup()
        with self._lock:
            previous, self._watched = self._watched, duplicate
            fired = self.fired
        if previous is not None:
            previous.close()
        if fired:
            _shut(duplicate)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            watched = self._watched
            if watched is not None:
                _shut(watched)

    def end(self) -> None:
        self._timer.cancel()
        with self._lock:
            watched, self._watched = self._watched, None
        if watched is not None:
            watched.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _tunnel(
    via: EgressProxy, address: str, port: int, timeout: float | None, deadline: _Deadline
) -> socket.socket:
    try:
        request = connect_request(via, address, port)
    except UnwritableAuthority:
        raise _EgressRefused(
            f"cannot ask egress proxy {via.display} for that address: not a plain host"
        ) from None
    try:
        sock = socket.create_connection((via.host, via.port), timeout)
    except OSError as exc:
        raise _EgressRefused(
            f"cannot reach egress proxy {via.display}: {exc.strerror or exc}"
        ) from None
    try:
        deadline.watch(sock)
        sock.sendall(request)
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
        self,
        endpoint: Endpoint,
        address: str,
        timeout: float,
        via: EgressProxy | None,
        deadline: _Deadline,
    ) -> None:
        super().__init__(endpoint.host, endpoint.port, timeout=timeout)
        self._address = address
        self._via = via
        self._deadline = deadline

    def connect(self) -> None:
        if self._via is None:
            self.sock = socket.create_connection((self._address, self.port), self.timeout)
            self._deadline.watch(self.sock)
        else:
            self.sock = _tunnel(self._via, self._address, self.port, self.timeout, self._deadline)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    def __init__(
        self,
        endpoint: Endpoint,
        address: str,
        timeout: float,
        via: EgressProxy | None,
        deadline: _Deadline,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(endpoint, address, timeout, via, deadline)
        self._context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def _unwritable(endpoint: Endpoint) -> str | None:
    """Why the request line or Host header cannot carry this endpoint (parse_endpoint refuses
    such URLs; this keeps an endpoint from elsewhere from writing raw bytes or crashing)."""
    for what, text in (("host", endpoint.host), ("path", endpoint.path)):
        if not text.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in text):
            return f"the request could not be written: the URL's {what} is not printable ASCII"
    return None


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
    if (unwritable := _unwritable(endpoint)) is not None:
        raise SendFailed(unwritable)
    deadline = _Deadline(timeout_s)
    conn: _PinnedHTTP = (
        _PinnedHTTPS(endpoint, address, timeout_s, via, deadline, tls)
        if endpoint.scheme == "https"
        else _PinnedHTTP(endpoint, address, timeout_s, via, deadline)
    )
    deadline.start()
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
        if deadline.fired:
            # http.client takes the end of the stream as the end of the head or body, so a
            # connection the deadline shut can look like a whole answer
            raise TimeoutError
    except (_EgressRefused, OSError, http.client.HTTPException, ValueError) as exc:
        # ssl.SSLError and TimeoutError are OSErrors; once the deadline shut the connection,
        # whatever the blocked read then saw is the timeout. ValueError: what http.client
        # raises for a value it cannot write, so that a send only ever fails as SendFailed
        raise _failure(exc, timeout_s, deadline.fired) from None
    finally:
        deadline.end()
        conn.close()
    if not 200 <= status < 300:
        raise SendFailed(f"answered {status}", status)
    return Answer(status)


def _failure(exc: Exception, timeout_s: float, timed_out: bool) -> SendFailed:
    if timed_out or isinstance(exc, TimeoutError):
        return SendFailed(f"no answer within {timeout_s:g}s")
    if isinstance(exc, _EgressRefused):
        return SendFailed(str(exc))
    if isinstance(exc, ssl.SSLError):
        return SendFailed(f"TLS failed: {describe_tls_error(exc)}")
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return SendFailed(f"connection failed: {reason}")
