"""``llmtap serve`` as a child process, for end-to-end tests and benchmarks.

It runs the real command (``python -m llmtap serve``) against a data directory of its own, waits
until the proxy answers ``/_llmtap/health``, and stops it with SIGTERM like an operator would.
"""

from __future__ import annotations

import http.client
import re
from pathlib import Path

from support.probes import wait_for
from support.processes import LlmtapProcess, free_port, llmtap_env

_KEY_LINE = re.compile(r"^\s+(sk-llmtap-\S+)\s*$", re.MULTILINE)


class GatewayProcess(LlmtapProcess):
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
        # a port of its own for the API, so gateways side by side never fight over 8788
        self.api_port = api_port or int((env or {}).get("LLMTAP_API_PORT") or free_port())
        args = ["--data-dir", str(data_dir), "serve", "--port", str(self.port)]
        super().__init__(
            [*args, "--processes", str(processes)],
            llmtap_env({"LLMTAP_API_PORT": str(self.api_port), **(env or {})}),
            data_dir.parent / f"{data_dir.name}-serve.log",
        )

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

    def first_key(self) -> str | None:
        """The API key ``serve`` printed on its first start, if it did."""
        found = _KEY_LINE.search(self.output())
        return found.group(1) if found else None

    def start(self, timeout_s: float = 60.0) -> GatewayProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        super().start()
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

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
