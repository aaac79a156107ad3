"""``TcpRelay.cut`` leaves no connection through, even one it was accepting at that moment.

A pair still being set up when ``cut()`` ran was invisible to it and went on relaying through the
whole outage: a keep-alive client (the consumer's S3 connection) then never saw S3 go away.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from support import relay as relay_module
from support.relay import TcpRelay


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[:2]
    listener.close()


def test_a_connection_accepted_while_the_relay_is_cut_is_closed(
    echo_server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = TcpRelay(echo_server)
    relay.start()
    real_connect = socket.create_connection

    def cut_first(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        relay.cut()  # the cut lands between the relay's accept() and its upstream connection
        return real_connect(address)

    # the module's own ``socket`` is the one module: the client below connects unpatched
    monkeypatch.setattr(relay_module.socket, "create_connection", cut_first)
    with real_connect(("127.0.0.1", relay.port), timeout=5) as client:
        client.sendall(b"ping")
        try:
            answer = client.recv(4)
        except ConnectionResetError:
            answer = b""
    assert answer == b"", "a connection got through a cut relay"


def test_a_relay_cut_and_restored_relays_again(echo_server: tuple[str, int]) -> None:
    relay = TcpRelay(echo_server)
    relay.start()
    relay.cut()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=5).close()
    relay.restore()
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
