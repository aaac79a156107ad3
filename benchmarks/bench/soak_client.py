"""Mixed traffic for the faults soak, at a fixed rate, keeping every id the clients were given.

Run as its own process by ``bench.faults_soak``::

    python -m bench.soak_client '{"port": ..., "rate": 200, "duration_s": 3600,
                                  "calls_file": "...", "reset_flag": "...", "seed": 1}'

Call ``i`` is sent at ``t0 + i / rate`` whether or not earlier ones were answered (open loop, so
a fault shows as lateness and failures, never as a lower offered rate), over ``connections``
keep-alive connections (call ``i`` on connection ``i % connections``). The mix, drawn from one
seeded generator: OpenAI chat and Anthropic messages, JSON and streams, and provider errors
(``x-mock-status``). While the file ``reset_flag`` exists, every stream asks the mock to reset
the connection after two chunks (``x-mock-drop-after-chunks``): an upstream that resets
mid-stream.

Each call is one line of ``calls_file``: ``<unix time>\\t<outcome>\\t<helicone-id or ->\\t<kind>``
with outcome ``ok`` (the whole response, with its id), ``cut`` (the head and its id, then the
connection ended mid-body) or ``fail:<why>`` (no answer: refused, reset before the head, timed
out). Prints one JSON line of totals at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import time
from typing import IO, Any

import uvloop

from bench.streamclient import percentiles

CALL_TIMEOUT_S = 30.0
PROMPT = "Summarise the quarterly report in three short sentences for the board"

# (kind, weight): about half streams, both providers, 15 % provider errors
MIX: tuple[tuple[str, int], ...] = (
    ("openai-json", 30),
    ("openai-stream", 25),
    ("anthropic-json", 15),
    ("anthropic-stream", 15),
    ("openai-error-429", 8),
    ("anthropic-error-529", 7),
)


def request_bytes(kind: str, port: int, reset: bool) -> bytes:
    """The wire request for one call of ``kind``."""
    headers = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    stream = kind.endswith("-stream")
    body: dict[str, Any]
    if kind.startswith("anthropic"):
        path = "/v1/messages"
        headers |= {"x-api-key": "sk-soak-not-a-real-key", "anthropic-version": "2023-06-01"}
        body = {
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    else:
        path = "/v1/chat/completions"
        headers["Authorization"] = "Bearer sk-soak-not-a-real-key"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
        headers |= {"x-mock-chunks": "6", "x-mock-chunk-delay-ms": "3"}
        if reset:
            headers["x-mock-drop-after-chunks"] = "2"
    else:
        headers["x-mock-chunks"] = "12"
    if "-error-" in kind:
        headers["x-mock-status"] = kind.rsplit("-", 1)[1]
    payload = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


class Cut(Exception):
    """The head (with its id) arrived, then the connection ended before the body did."""

    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


async def read_answer(reader: asyncio.StreamReader) -> tuple[str, bool]:
    """(helicone-id, keep-alive) once the whole response is read; ``Cut`` if it ends mid-body."""
    head = await reader.readuntil(b"\r\n\r\n")
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    request_id = fields.get("helicone-id")
    if not request_id:
        raise ConnectionError("an answer without a helicone-id: " + head[:40].decode("latin-1"))
    try:
        if fields.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                await reader.readexactly(size + 2)
        else:
            await reader.readexactly(int(fields.get("content-length", "0")))
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError):
        raise Cut(request_id) from None
    return request_id, fields.get("connection", "").lower() != "close"


class Client:
    def __init__(self, cfg: dict[str, Any], out: IO[str]) -> None:
        self.port = int(cfg["port"])
        self.rate = float(cfg["rate"])
        self.total = int(self.rate * float(cfg["duration_s"]))
        self.connections = int(cfg.get("connections", 32))
        self.flag = str(cfg["reset_flag"])
        rng = random.Random(int(cfg.get("seed", 1)))
        kinds, weights = zip(*MIX, strict=True)
        self.kinds = rng.choices(kinds, weights, k=self.total)
        self.out = out
        self.late: list[float] = []
        self.outcomes: dict[str, int] = {}
        self._reset = False
        self._flag_checked = 0.0

    def resetting(self) -> bool:
        now = time.monotonic()
        if now - self._flag_checked > 0.2:  # one stat per 200 ms, not one per call
            self._flag_checked = now
            self._reset = os.path.exists(self.flag)
        return self._reset

    def note(self, outcome: str, request_id: str, kind: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.out.write(f"{time.time():.3f}\t{outcome}\t{request_id}\t{kind}\n")

    async def worker(self, k: int, t0: float) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for i in range(k, self.total, self.connections):
            delay = t0 + i / self.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.late.append(-delay)
            kind = self.kinds[i]
            request = request_bytes(kind, self.port, self.resetting() and "stream" in kind)
            try:
                if conn is None:
                    conn = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", self.port), 5.0
                    )
                conn[1].write(request)
                request_id, keep = await asyncio.wait_for(read_answer(conn[0]), CALL_TIMEOUT_S)
            except Cut as cut:
                self.note("cut", cut.request_id, kind)
                conn = self._close(conn)
                continue
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                self.note(f"fail:{type(exc).__name__}", "-", kind)
                conn = self._close(conn)
                continue
            self.note("ok", request_id, kind)
            if not keep:
                conn = self._close(conn)
        self._close(conn)

    @staticmethod
    def _close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is not None:
            conn[1].close()

    async def run(self) -> dict[str, Any]:
        t0 = time.perf_counter() + 0.2
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(self.worker(k, t0) for k in range(self.connections)))
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        return {
            "rate": self.rate,
            "sent": self.total,
            "outcomes": self.outcomes,
            "mix": {kind: self.kinds.count(kind) for kind, _ in MIX},
            "wall_s": round(wall, 1),
            "late_sends": len(self.late),
            "lateness_ms": percentiles(self.late),
            "client_cpu_percent": round(100.0 * cpu / wall, 1) if wall else 0.0,
        }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    with open(cfg["calls_file"], "a", buffering=1 << 16) as out:
        result = uvloop.run(Client(cfg, out).run())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
