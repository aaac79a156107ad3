"""An HTTP endpoint on 127.0.0.1 that llmtap delivers to (a webhook receiver, a PostHog-like
capture server), for tests: it keeps every request it got, can fail the first N, can be taken
down and brought back on the same port, and can check each body with a function of the test's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.processes import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    status: int
    """What the receiver answered."""

    def json(self) -> object:
        return json.loads(self.body)


class Receiver:
    def __init__(
        self,
        *,
        fail_first: int = 0,
        check: Callable[[Received], str | None] | None = None,
    ) -> None:
        self.port = free_port()
        self.fail_first = fail_first
        self.failing = False
        """Answer 500 to everything while set."""
        self.check = check
        """Returns why a request is malformed (answered 400), or None."""
        self.received: list[Received] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            answered = len(self.received)
        status = 200
        if answered < self.fail_first or self.failing:
            status = 500
        elif self.check is not None:
            problem = self.check(Received(path, headers, body, 0))
            if problem is not None:
                status = 400
                with self._lock:
                    self.problems.append(problem)
        with self._lock:
            self.received.append(Received(path, headers, body, status))
        return status

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._handle(self.path, headers, body)
                answer = b'{"status": 1}' if status == 200 else b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until ``start`` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
