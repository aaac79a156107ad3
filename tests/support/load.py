"""Client load for fault tests: threads calling a proxy, keeping what each call was answered.

A call counts as answered only when the client got the whole response with a ``Helicone-Id``;
everything else (refused connections while a proxy restarts, cut responses) is kept apart, since
llmtap owes a record only for an answered call.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field

import httpx

PROMPT = [{"role": "user", "content": "hello"}]


@dataclass
class Answers:
    ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.ids)

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.ids)


class Load:
    """``threads`` clients calling ``url`` until the block ends; every other call of a client is
    a stream when ``streams`` is set, so both shapes are in the mix."""

    def __init__(
        self,
        url: str,
        answers: Answers,
        *,
        threads: int = 4,
        pause_s: float = 0.0,
        streams: bool = True,
    ) -> None:
        self._url = url + "/v1/chat/completions"
        self._answers = answers
        self._pause_s = pause_s
        self._streams = streams
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set():
                n += 1
                stream = self._streams and n % 2 == 0
                body = {"model": "gpt-4o-mini", "messages": PROMPT, "stream": stream}
                headers = {"authorization": "Bearer sk-test", "x-mock-chunks": "3"}
                try:
                    response = client.post(self._url, json=body, headers=headers)
                except (httpx.HTTPError, http.client.HTTPException) as exc:
                    with self._answers.lock:
                        self._answers.failures.append(repr(exc))
                    self._stop.wait(0.05)  # a proxy restarting: do not spin on refusals
                    continue
                if response.status_code != 200 or "helicone-id" not in response.headers:
                    with self._answers.lock:
                        self._answers.failures.append(f"{response.status_code}: {response.text}")
                    continue
                with self._answers.lock:
                    self._answers.ids.append(response.headers["helicone-id"])
                if self._pause_s:
                    self._stop.wait(self._pause_s)


def proxy_metrics(url: str) -> dict[str, float]:
    """A proxy's ``/_llmtap/metrics`` as {name: value} (one process's counters)."""
    text = httpx.get(url + "/_llmtap/metrics", timeout=5.0).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            found[name] = float(value)
    return found
