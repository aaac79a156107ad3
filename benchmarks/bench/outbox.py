"""Consumer throughput with webhooks that cannot be delivered, against none at all::

    cd benchmarks && PYTHONPATH=$PWD:../src ../.venv/bin/python -m bench.outbox --records 20000

Each scenario gets a fresh embedded data directory whose queue is filled with ``--records``
synthetic proxy records (no bodies: the chain's cost is not what is measured), then one
``ConsumerService`` (its delivery worker running, as in ``llmtap consume``) drains it, timed:

* ``none``: no webhook configured;
* ``healthy``: three webhooks on a local receiver that answers 200 at once;
* ``dead``: three webhooks on a port where nothing listens (every send refused at once);
* ``blackhole``: three webhooks on a socket that accepts and never answers (every send holds a
  sending thread until ``outbox_timeout_s``).

The consumer does nothing for a webhook: the delivery worker reads the stored calls after each
webhook's cursor and adds a window of deliveries to the outbox at a time, only while the endpoint
is not backing off (docs/decisions/2026-12-01-outbox-cursor.md). So ``dead`` and ``blackhole``
should drain at the speed of ``none`` (records/s and, steadier on a shared machine, records per
CPU-second of the whole process, the worker's threads included; ``consumer_cpu_s`` is the batch
loop's thread alone, ``other_cpu_s`` the rest; of that, ``outbox_loop_cpu_s`` is the delivery
worker's loop (claims, feeds, payloads) and ``senders_cpu_s`` its sending threads, from
``/proc``), holding a few rows in the outbox (``outbox rows``) however many calls wait.
``--scenarios none,dead,none,dead`` runs the named ones in that order (a name may repeat: on a
shared machine one pair of runs differs by ±15 %, so repeat and alternate). ``LLMTAP_BENCH_BASE_SRC`` is not used here: for a
before/after, run this module once with main's ``src`` on ``PYTHONPATH`` and once with yours, in
one ``flock``. Writes the "Outbox" section of RESULTS.md (between its markers) and
``results/<stamp>-outbox.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.sections import update_section
from llmtap.consumer.service import ConsumerService
from llmtap.queue.factory import open_producer
from llmtap.record import LogRecord, Timing, encode
from llmtap.settings import Settings
from llmtap.stores.factory import open_records_store
from llmtap.stores.records.engine import create_engine

HERE = Path(__file__).resolve().parent.parent
START, END = "<!-- outbox:start -->", "<!-- outbox:end -->"


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def fill(settings: Settings, n: int) -> None:
    producer = open_producer(settings)
    try:
        for i in range(n):
            record = LogRecord(
                request_id=f"bench-{i:08d}",
                source="proxy",
                provider="openai",
                method="POST",
                target_url="https://api.openai.com/v1/chat/completions",
                status=200,
                timing=Timing(start_unix_ms=1_764_000_000_000.0 + i, total_ms=20.0),
                properties={"env": "bench"},
            )
            producer.publish(settings.topic, record.request_id.encode(), encode(record))
        producer.flush(60)
    finally:
        producer.close()


def _thread_cpu_s() -> dict[str, float]:
    """CPU seconds of each live thread of this process by role (Linux ``/proc``; empty
    elsewhere): the batch loop, the delivery worker's loop and senders, the rest (the analytics
    store's native threads, the bench's receiver)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        name = names.get(int(tid), "")
        role = (
            "consumer"
            if name == "MainThread"
            else "outbox_loop"
            if name == "llmtap-outbox"
            else "senders"
            if name.startswith("llmtap-delivery")
            else "other"
        )
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def drain(settings: Settings, n: int, timeout_s: float) -> dict[str, Any]:
    service = ConsumerService(settings)
    if service.delivery is not None:
        service.delivery.start()
    runner, stop = service.runner, threading.Event()
    threads0 = _thread_cpu_s()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    thread0 = time.thread_time()  # the batch loop runs on this thread
    deadline = t0 + timeout_s
    while runner.stats.processed < n and time.perf_counter() < deadline:
        runner.run_once(stop)
    seconds = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    consumer_cpu_s = time.thread_time() - thread0
    threads1 = _thread_cpu_s()
    engine = create_engine(settings.records_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar_one()
    finally:
        engine.dispose()
    result = {
        "processed": runner.stats.processed,
        "seconds": round(seconds, 3),
        "records_per_s": round(runner.stats.processed / seconds, 1),
        # every thread of the process, the delivery worker's too: steadier than records/s on
        # a machine shared with other work
        "records_per_cpu_s": round(runner.stats.processed / cpu_s, 1) if cpu_s else 0.0,
        # the batch loop's thread alone, and what the rest (the delivery worker) took meanwhile
        "consumer_cpu_s": round(consumer_cpu_s, 3),
        "other_cpu_s": round(cpu_s - consumer_cpu_s, 3),
        # the same split per thread (/proc, 10 ms ticks): the worker's loop and its senders
        **{
            f"{role}_cpu_s": round(threads1.get(role, 0.0) - threads0.get(role, 0.0), 2)
            for role in ("outbox_loop", "senders")
        },
        "enqueued": runner.stats.enqueued,
        "outbox_rows": int(rows),
        "sends_failed": service.delivery.stats.failures if service.delivery else 0,
    }
    service.stop(timeout=30)
    return result


def scenario(name: str, n: int, timeout_s: float, dead_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"llmtap-outbox-{name}-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            outbox_allow_private_targets=True,
            outbox_retry_base_s=0.5,
            outbox_retry_max_s=2.0,
            outbox_poll_s=0.1,
            outbox_timeout_s=30.0,
        )
        if dead_url is not None:
            store = open_records_store(settings.records_url)
            try:
                org = store.default_org_id()
                for i in range(3):
                    store.integrations.create_webhook(org, f"{dead_url}/{i}", 100.0, {})
            finally:
                store.close()
        fill(settings, n)
        return {"scenario": name, **drain(settings, n, timeout_s)}


def render(results: list[dict[str, Any]], n: int) -> str:
    base = results[0]["records_per_s"] or 1.0
    base_cpu = results[0]["records_per_cpu_s"] or 1.0
    lines = [
        START,
        "## Outbox: consumer throughput with undeliverable webhooks",
        "",
        f"`python -m bench.outbox --records {n}` (embedded: SQLite queue and records store, chDB "
        "analytics, records without bodies; one consumer with its delivery worker running; "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores shared with other work: load "
        f"average {os.getloadavg()[0]:.1f} at the end, so compare rows of one run only).",
        "",
        "| scenario | records | seconds | records/s | vs none | records/CPU-s | vs none"
        " | enqueued | outbox rows | failed sends |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['scenario']} | {r['processed']} | {r['seconds']} | {r['records_per_s']} |"
            f" {r['records_per_s'] / base:.2f}x | {r['records_per_cpu_s']} |"
            f" {r['records_per_cpu_s'] / base_cpu:.2f}x | {r['enqueued']} | {r['outbox_rows']} |"
            f" {r['sends_failed']} |"
        )
    lines += ["", END, ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox")
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument(
        "--scenarios",
        default="none,healthy,dead,blackhole",
        help="comma-separated, in the order run (a name may repeat: 'none,dead,none,dead' shows"
        " how much the order alone moves the figures); the first is the baseline of 'vs none'",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connections are refused
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(1024)  # accepts (the kernel does) and never answers
    healthy = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=healthy.serve_forever, daemon=True).start()
    urls: dict[str, str | None] = {
        "none": None,
        "healthy": f"http://127.0.0.1:{healthy.server_address[1]}",
        "dead": f"http://127.0.0.1:{dead_port}",
        "blackhole": f"http://127.0.0.1:{blackhole.getsockname()[1]}",
    }
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in urls]
    if unknown or not names:
        parser.error(f"--scenarios: one or more of {', '.join(urls)} (got {args.scenarios!r})")
    try:
        results = [scenario(n, args.records, args.timeout_s, urls[n]) for n in names]
    finally:
        blackhole.close()
        healthy.shutdown()
    for r in results:
        print(json.dumps(r), flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"{stamp}-outbox.json"
    out.write_text(json.dumps({"records": args.records, "results": results}, indent=2) + "\n")
    update_section(HERE / "RESULTS.md", render(results, args.records), START, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
