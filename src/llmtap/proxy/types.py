"""The proxy's seams: what its parts promise each other, stated once, as Protocols.

One call crosses four parts::

    client connection --dispatch/reject--> app --send--> pool --start--> provider connection
           ^                                ^                                   |
           | write, exchange_done           | finish                            | on_response_*, fail
           +---------------------------- Exchange <-----------------------------+

Each part holds the others only as the Protocols below:

    ``Exchange``            the app as ``ExchangeHost``, its client as ``ClientSide``, the
                            provider connection carrying it as ``UpstreamSide``
    ``ClientConnection``    the app as ``ConnectionHost``, the exchange it waits on as
                            ``ClientExchange``
    ``ProxyApp``            the pool as ``Pool``, the client connections as ``SweptConnection``
    ``UpstreamConnection``  its exchange as ``UpstreamExchange``, its pool as ``ConnectionPool``

Typing only: nothing here runs on a call (no ``isinstance`` against a Protocol, no wrapper
objects); mypy checks each concrete class against these shapes where they meet (the server, the
app, the client connection and the pool wire them together). ``Exchange`` imports nothing of the
client, the app or the upstream side, so plain objects can drive it in a unit test.

``ExchangeHost``/``ConnectionHost``/``ConnectionPool`` are generic in the concrete type they are
handed back (the exchange, the connection): this module cannot name those classes without an
import cycle, and their users need the concrete type, not a Protocol of it.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from llmtap.capture.tap import HeaderList
from llmtap.proxy.limits import ClientLimits
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.routing import Upstream

E_contra = TypeVar("E_contra", contravariant=True)
"""The exchange type the app is handed back (``Exchange``)."""
C_contra = TypeVar("C_contra", contravariant=True)
"""The connection type a pool keeps (``UpstreamConnection``)."""

# -- what each side promises the exchange ---------------------------------------------------------


class ClientSide(Protocol):
    """The client connection an exchange answers: it writes, and learns when the answer ends."""

    @property
    def writing_paused(self) -> bool:
        """The client is not reading: a provider connection starting now must start paused."""

    def write(self, data: bytes) -> None:
        """Queue bytes to the client (nothing once the connection is closed)."""

    def cork(self) -> None:
        """Hold what is written from now on until ``uncork`` (or ``close``): the
        provider connection corks the client while it handles one read, so what came in it (a
        stream's events) leaves in one send, not one send each. Only while other calls are in
        flight: with one call alone, each piece leaves at once (its first token earliest)."""

    def uncork(self) -> None:
        """Send what was held, in one write, at once, and hold nothing more."""

    def exchange_done(self, keep_alive: bool) -> None:
        """The last byte of this answer was written: start the next request, or close."""


class UpstreamSide(Protocol):
    """The provider connection carrying an exchange (held by the exchange while it does)."""

    def abort(self) -> None:
        """Drop the connection and the call on it; it drives the exchange no more."""

    def drain(self) -> None:
        """The client left with the whole answer: read the rest of the response alone (within
        the pool's drain bounds), then pool the connection or drop it; it drives the exchange
        no more."""

    def pause_reading(self) -> None:
        """The client is not reading: read nothing more from the provider for it."""

    def resume_reading(self) -> None: ...


class ExchangeHost(Protocol[E_contra]):
    """The app, as an exchange sees it: a capture limit, a drain flag, and the hand-off."""

    @property
    def draining(self) -> bool:
        """Shutting down: every answer from now on says ``connection: close``."""

    @property
    def max_capture(self) -> int:
        """Response bytes an exchange keeps for the log (the client gets all of them)."""

    def finish(self, exchange: E_contra) -> None:
        """The client has every byte it will get: hand the exchange to logging (never raises)."""


# -- what the exchange promises each side ---------------------------------------------------------


class UpstreamExchange(Protocol):
    """The exchange, as the upstream side sees it: a request to write and a response sink.

    The upstream side calls ``on_response_head`` once, ``on_response_body`` per piece, then
    ``on_response_complete``; or ``fail`` at any point (after the head, the client's response
    is cut). It sets ``conn`` while a connection carries the call, ``retried`` when it replays
    it, and ``last_activity_ns`` when the provider shows life without a response (1xx).
    """

    conn: UpstreamSide | None
    retried: bool
    last_activity_ns: int

    @property
    def method(self) -> bytes: ...
    @property
    def request_headers(self) -> HeaderList: ...
    @property
    def request_bytes(self) -> bytes:
        """The whole request as it goes upstream (head and body)."""

    @property
    def upstream(self) -> Upstream | None: ...
    @property
    def client(self) -> ClientSide: ...
    @property
    def head_sent(self) -> bool: ...
    @property
    def finished(self) -> bool:
        """Handed off already (the client left, or the call failed): drive it no more."""

    def on_response_head(
        self, status: int, reason: bytes, headers: HeaderList, upstream_chunked: bool
    ) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_complete(self) -> None: ...
    def fail(self, status: int, code: str, message: str) -> None:
        """Answer with a provider-shaped error, or (after the head) cut the response."""


class ClientExchange(Protocol):
    """The exchange, as the client connection sees it while answering its request."""

    @property
    def conn(self) -> UpstreamSide | None:
        """The provider connection to pause and resume with the client's reading."""

    def client_gone(self) -> None:
        """The client disconnected: stop the upstream call and log it as disconnected (unless
        it already had the provider's final stream event: then the call is complete)."""


# -- what the app promises the client connections, and what they promise it ----------------------


class SweptConnection(Protocol):
    """A client connection, as the app's drain and once-a-second sweep see it."""

    @property
    def current(self) -> ClientExchange | None:
        """The exchange being answered (None: idle, or between requests)."""

    @property
    def deadline_ns(self) -> int:
        """When a head, a body or a next request is overdue (0: nothing is due)."""

    def close(self) -> None: ...
    def time_out(self) -> None:
        """The deadline passed with no answer in flight: refuse (408) or close."""


class ConnectionHost(ExchangeHost[E_contra], Protocol[E_contra]):
    """The app, as a client connection sees it: where complete requests go, and its limits."""

    @property
    def limits(self) -> ClientLimits: ...
    @property
    def metrics(self) -> ProxyMetrics: ...
    @property
    def calls_in_flight(self) -> int:
        """Calls between their request and the hand-off of their answer (this one included)."""

    @property
    def connections(self) -> set[SweptConnection]:
        """Open client connections; each adds itself when made and leaves when lost."""

    def dispatch(self, exchange: E_contra) -> None:
        """Route and forward a complete request (the answer comes back through the exchange)."""

    def reject(self, exchange: E_contra, status: int, code: str, message: str) -> None:
        """Answer a request llmtap refuses (still logged)."""


# -- the upstream side ----------------------------------------------------------------------------


class Pool(Protocol):
    """Provider connections, as the app sees them."""

    def send(self, exchange: UpstreamExchange) -> None:
        """Write the exchange's request on a pooled connection, or on a new one."""


class ConnectionPool(Protocol[C_contra]):
    """The pool, as each of its provider connections sees it."""

    @property
    def max_head_bytes(self) -> int: ...
    @property
    def drain_timeout_s(self) -> float:
        """How long a connection reads a response whose client left with the whole answer."""

    @property
    def drain_max_bytes(self) -> int:
        """How many bytes it reads of it at most."""

    def connect(self, exchange: UpstreamExchange) -> None:
        """Replay the exchange on a new connection (the reused one closed before answering)."""

    def release(self, conn: C_contra) -> None:
        """The response is complete and the connection clean: keep it for the next call."""

    def forget(self, conn: C_contra) -> None:
        """The connection cannot carry another call: never hand it out again."""
