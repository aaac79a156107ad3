"""A small asyncio load client for streamed calls: time to first token and total time.

Runs as its own process (pinned next to the mock) so its CPU can be measured and reported::

    python -m bench.streamclient '{"host": ..., "port": ..., "path": ..., "headers": {...},
                                   "body": "...", "concurrency": 16, "duration_s": 10}'

Each of ``concurrency`` workers keeps one HTTP/1.1 connection and sends calls back to back. The
first token is the first SSE event whose delta carries non-empty ``content``; the end is the
terminal chunk of the chunked body (or Content-Length). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import resource
import sys
import time
from typing import Any

import uvloop

CONTENT = re.compile(rb'"content"\s*:\s*"[^"]')
TERMINAL = b"\r\n0\r\n\r\n"


class Failed(Exception):
    pass


async def one_call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[float, float, bool]:
    """Send one call, read its whole answer; (ttft_s, total_s, connection_reusable)."""
    t0 = time.perf_counter()
    writer.write(request)
    buf = bytearray()
    while (head_end := buf.find(b"\r\n\r\n")) < 0:
        chunk = await reader.read(65536)
        if not chunk:
            raise Failed("connection closed before the response head")
        buf += chunk
    head = bytes(buf[:head_end]).lower()
    if not head.startswith((b"http/1.1 200", b"http/1.0 200")):
        raise Failed(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    body_start = head_end + 4
    length: int | None = None
    chunked = b"transfer-encoding: chunked" in head
    if not chunked:
        found = re.search(rb"content-length:\s*(\d+)", head)
        length = int(found.group(1)) if found else None
    reusable = b"connection: close" not in head and (chunked or length is not None)
    ttft = -1.0
    scanned = body_start
    while True:
        if ttft < 0:
            found_content = CONTENT.search(buf, max(body_start, scanned - 32))
            if found_content:
                ttft = time.perf_counter() - t0
            scanned = len(buf)
        if chunked and buf.endswith(TERMINAL):
            break
        if length is not None and len(buf) - body_start >= length:
            break
        chunk = await reader.read(65536)
        if not chunk:
            if chunked or length is not None:
                raise Failed("connection closed mid-body")
            break
        buf += chunk
    total = time.perf_counter() - t0
    if ttft < 0:
        raise Failed("no content in the stream")
    return ttft, total, reusable


async def worker(
    cfg: dict[str, Any],
    request: bytes,
    deadline: float,
    out: dict[str, list[float]],
    kinds: set[str],
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline:
        if writer is None:
            reader, writer = await asyncio.open_connection(cfg["host"], cfg["port"])
        assert reader is not None
        try:
            ttft, total, reusable = await asyncio.wait_for(
                one_call(reader, writer, request), timeout=30.0
            )
        except (Failed, OSError, TimeoutError) as exc:
            out["errors"].append(1.0)
            kinds.add(str(exc)[:80])
            writer.close()
            writer = None
            continue
        out["ttft"].append(ttft)
        out["total"].append(total)
        if not reusable:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)
    result = {}
    for q in (50, 90, 95, 99, 99.9):
        index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
        result[str(q)] = ordered[index] * 1000
    result["mean"] = sum(ordered) / len(ordered) * 1000
    return result


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    headers = {
        "Host": f"{cfg['host']}:{cfg['port']}",
        "Content-Type": "application/json",
        "Content-Length": str(len(cfg["body"].encode())),
        **cfg["headers"],
    }
    request = (
        f"POST {cfg['path']} HTTP/1.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
        + cfg["body"]
    ).encode()
    out: dict[str, list[float]] = {"ttft": [], "total": [], "errors": []}
    warmup_deadline = time.perf_counter() + float(cfg.get("warmup_s", 1.0))
    warm: dict[str, list[float]] = {"ttft": [], "total": [], "errors": []}
    await asyncio.gather(
        *(worker(cfg, request, warmup_deadline, warm, set()) for _ in range(cfg["concurrency"]))
    )
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    deadline = t0 + float(cfg["duration_s"])
    kinds: set[str] = set()
    await asyncio.gather(
        *(worker(cfg, request, deadline, out, kinds) for _ in range(cfg["concurrency"]))
    )
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {
        "requests": len(out["total"]),
        "errors_total": len(out["errors"]),
        "error_kinds": sorted(kinds)[:5],
        "rps": len(out["total"]) / wall,
        "ttft_ms": percentiles(out["ttft"]),
        "latency_ms": percentiles(out["total"]),
        "cpu_s": cpu,
        "cpu_percent": 100.0 * cpu / wall,
        "wall_s": wall,
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    print(json.dumps(uvloop.run(run(cfg))), flush=True)


if __name__ == "__main__":
    main()
