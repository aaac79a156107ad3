"""A raw TCP peer on 127.0.0.1 that plays a hostile egress proxy or endpoint: it runs a given
``serve`` on each connection (after reading the client's first bytes into ``got``)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class RawServer:
    """Accepts connections on 127.0.0.1 and runs ``serve`` on each until it is stopped; what a
    client sent is kept in ``got``."""

    def __init__(self, serve: Callable[[socket.socket, RawServer], None]) -> None:
        self._serve = serve
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.stopped = threading.Event()
        self.got: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._serving = 0
        self._lock = threading.Lock()

    def __enter__(self) -> RawServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def busy(self) -> bool:
        """Whether a connection is still being served."""
        with self._lock:
            return self._serving > 0

    def _run(self, conn: socket.socket) -> None:
        with self._lock:
            self._serving += 1
        try:
            self._serve_one(conn)
        finally:
            with self._lock:
                self._serving -= 1

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                self.got.append(conn.recv(65536))
                self._serve(conn, self)
            except OSError:
                pass


def drip(
    prefix: bytes, every_s: float = 0.05, for_s: float = 4.0, piece: bytes = b"a"
) -> Callable[..., None]:
    """Sends ``prefix`` then ``piece`` (one byte of a header that never ends) every ``every_s``
    (well inside the client's per-read timeout), for at most ``for_s``: a slow-loris answer."""

    def serve(conn: socket.socket, server: RawServer) -> None:
        conn.sendall(prefix)
        end = time.monotonic() + for_s
        while time.monotonic() < end and not server.stopped.wait(every_s):
            conn.sendall(piece)

    return serve
