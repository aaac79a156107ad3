"""``llmtap serve`` as a child process, for end-to-end tests and benchmarks.

It runs the real command (``python -m llmtap serve``) against a data directory of its own, waits
until the proxy answers ``/_llmtap/health``, and stops it with SIGTERM like an operator would.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from llmtap.testing.probes import wait_for

_KEY_LINE = re.compile(r"^\s+(sk-llmtap-\S+)\s*$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        processes: int = 1,
        api_port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.processes = processes
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTAP_")}
        # a port of its own for the API, so gateways side by side never fight over 8788
        self.api_port = api_port or int((env or {}).get("LLMTAP_API_PORT") or free_port())
        self.env["LLMTAP_API_PORT"] = str(self.api_port)
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The query & metrics API, served by serve's backend process."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def records_url(self) -> str:
        return f"sqlite:///{self.data_dir.absolute() / 'records.db'}"

    @property
    def bodies_url(self) -> str:
        return f"file://{self.data_dir.absolute() / 'bodies'}"

    @property
    def queue_url(self) -> str:
        return f"sqlite:///{self.data_dir.absolute() / 'queue.db'}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def first_key(self) -> str | None:
        """The API key ``serve`` printed on its first start, if it did."""
        found = _KEY_LINE.search(self.output())
        return found.group(1) if found else None

    def start(self, timeout_s: float = 60.0) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "llmtap", "--data-dir", str(self.data_dir), "serve"]
        command += ["--port", str(self.port), "--processes", str(self.processes)]
        self.process = subprocess.Popen(
            command,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(self._healthy, timeout_s=timeout_s, interval_s=0.1, what="llmtap serve")
        except TimeoutError:
            self.kill()
            raise TimeoutError(f"llmtap serve did not start:\n{self.output()[-4000:]}") from None
        return self

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"llmtap serve exited early:\n{self.output()[-4000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            conn.request("GET", "/_llmtap/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def wait_api(self, timeout_s: float = 60.0) -> GatewayProcess:
        """Wait until the backend's API answers ``/v1/health`` (it starts after the proxy)."""
        wait_for(
            lambda: self._answers(self.api_port, "/v1/health"),
            timeout_s=timeout_s,
            interval_s=0.1,
            what="the llmtap API",
        )
        return self

    def _answers(self, port: int, path: str) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"llmtap serve exited early:\n{self.output()[-4000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        try:
            conn.request("GET", path)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, timeout_s: float = 90.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self._close_log()
        return code

    def kill(self) -> None:
        """SIGKILL serve and its children at once (a crash, not a shutdown)."""
        if self.process is not None and self.process.poll() is None:
            # the whole process group: serve's children must not outlive it
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
