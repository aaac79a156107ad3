"""Open-loop load at a fixed rate, and how soon each answered call is queryable.

Run as its own process (pinned next to the mock)::

    python -m bench.freshness_client '{"port": ..., "rate": 500, "duration_s": 20,
                                       "records_db": "/path/records.db", "headers": {...}, ...}'

Call ``i`` is sent at ``t0 + i / rate`` whether or not earlier ones were answered (so a slow
gateway shows as lateness, not as a lower rate). A thread polls the records store (read-only)
every few milliseconds and notes when each request id first appears; freshness is that moment
minus the moment the client had read the whole response. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sqlite3
import sys
import threading
import time
from typing import Any

import uvloop

from bench.streamclient import percentiles

ID = re.compile(rb"\r\nhelicone-id:\s*([^\r]+)", re.IGNORECASE)
LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Poller(threading.Thread):
    def __init__(self, db: str, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.interval = interval_s
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.errors = 0
        self.all_seen = threading.Event()
        self._want: set[str] | None = None
        self._lock = threading.Lock()

    def expect(self, ids: set[str]) -> None:
        """Set ``all_seen`` once every one of ``ids`` has been seen."""
        with self._lock:
            self._want = ids - self.seen.keys()
            if not self._want:
                self.all_seen.set()

    def run(self) -> None:
        conn: sqlite3.Connection | None = None
        last = 0
        while not self.stop.wait(self.interval):
            try:
                if conn is None:
                    conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1.0)
                rows = conn.execute(
                    "SELECT rowid, request_id FROM requests WHERE rowid > ? ORDER BY rowid", (last,)
                ).fetchall()
            except sqlite3.Error:
                self.errors += 1
                conn = None
                continue
            now = time.perf_counter()
            with self._lock:
                for rowid, request_id in rows:
                    self.seen.setdefault(request_id, now)
                    last = max(last, rowid)
                    if self._want is not None:
                        self._want.discard(request_id)
                if self._want is not None and not self._want:
                    self.all_seen.set()


async def call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[str, float]:
    writer.write(request)
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        buf += chunk
    head = bytes(buf[: end + 2])
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    length = LENGTH.search(head)
    if length is None:
        raise ConnectionError("no content-length")
    want = end + 4 + int(length.group(1))
    while len(buf) < want:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        buf += chunk
    done = time.perf_counter()
    found = ID.search(head)
    if found is None:
        raise ConnectionError("no helicone-id in the answer")
    return found.group(1).decode().strip(), done


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    rate = float(cfg["rate"])
    total = int(rate * float(cfg["duration_s"]))
    workers = int(cfg.get("connections", 64))
    body = json.dumps(cfg["body"]).encode()
    head = (
        f"POST {cfg['path']} HTTP/1.1\r\nHost: 127.0.0.1:{cfg['port']}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in cfg["headers"].items())
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    poller = (
        Poller(cfg["records_db"], float(cfg.get("poll_interval_s", 0.005)))
        if cfg.get("records_db")
        else None
    )
    if poller is not None:
        poller.start()
    done: dict[str, float] = {}
    late: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter() + 0.2

    async def worker(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", cfg["port"])
        for i in range(k, total, workers):
            when = t0 + i / rate
            delay = when - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay)
            try:
                request_id, finished = await asyncio.wait_for(call(reader, writer, request), 30)
            except (OSError, TimeoutError) as exc:
                errors.append(str(exc)[:80])
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", cfg["port"])
                continue
            done[request_id] = finished
        writer.close()

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker(k) for k in range(workers)))
    sent_s = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    result: dict[str, Any] = {
        "rate": rate,
        "sent": total,
        "answered": len(done),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "achieved_rps": len(done) / sent_s if sent_s else 0.0,
        "late_sends": len(late),
        "lateness_ms": percentiles(late),
        "client_cpu_percent": 100.0
        * ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        / sent_s,
    }
    if poller is not None:
        poller.expect(set(done))
        await asyncio.to_thread(poller.all_seen.wait, float(cfg.get("settle_s", 30.0)))
        poller.stop.set()
        poller.join()
        lags = [poller.seen[i] - t for i, t in done.items() if i in poller.seen]
        result["queryable"] = len(lags)
        result["never_seen"] = len(done) - len(lags)
        result["freshness_ms"] = percentiles(lags)
        result["poll_interval_ms"] = 1000 * poller.interval
        result["poll_errors"] = poller.errors
    return result


def main() -> None:
    cfg = json.loads(sys.argv[1])
    print(json.dumps(uvloop.run(run(cfg))), flush=True)


if __name__ == "__main__":
    main()
