"""``llmtap proxy`` / ``llmtap consume`` / any ``llmtap`` command as a child process, the way the
distributed topology runs them: configured only through ``LLMTAP_*`` variables, stopped with
SIGTERM (a drain) or SIGKILL (a crash)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from support.probes import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def llmtap_env(settings_env: dict[str, str]) -> dict[str, str]:
    """This process's environment without its own ``LLMTAP_*`` variables, plus ``settings_env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTAP_")}
    env.update(settings_env)
    return env


class LlmtapProcess:
    def __init__(self, args: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> LlmtapProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llmtap", *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 90.0) -> int:
        """SIGTERM and wait: the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self._close_log()
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, nothing gets to finish."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class ProxyProcess(LlmtapProcess):
    """``llmtap proxy`` on a free port; ``start`` returns once ``/_llmtap/health`` answers."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        super().__init__(["proxy", "--port", str(self.port)], env, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ProxyProcess:
        super().start()
        wait_for(
            lambda: self._get("/_llmtap/health") is not None,
            timeout_s=timeout_s,
            interval_s=0.1,
            what="llmtap proxy",
        )
        return self

    def metrics(self) -> dict[str, float]:
        """``/_llmtap/metrics`` as {name: value}."""
        text = self._get("/_llmtap/metrics") or ""
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition(" ")
                found[name] = float(value)
        return found

    def _get(self, path: str) -> str | None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"llmtap proxy exited:\n{self.output()[-4000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
            return body if response.status == 200 else None
        except OSError:
            return None
        finally:
            conn.close()
