"""Catch-up after a consumer outage (issue 13, part 2): ``llmtap proxy`` keeps answering a steady
rate into the embedded queue while no consumer runs; then ``llmtap consume`` starts, with the
traffic still coming, and this measures how long it takes to store the backlog.

The proxy runs pinned to the gateway core, the load client and the mock on the load core; the
consumer is not pinned (it gets what the two cores have left, as a consumer beside a proxy
would). Every second: the proxy's published count (``/_llmtap/metrics``) and the rows in the
records store (read-only SQLite). "Drained" is the moment the store holds every record published
before the consumer started; "caught up" is the moment the backlog is down to two seconds of
traffic. Written to its own section of RESULTS.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.overhead import bodies, check, proxy_metrics
from bench.pipeline import PROXY_PORT, proxy_service, steady_load
from bench.procs import cpu_seconds, rss_bytes, tree
from bench.sections import update_section
from bench.targets import AUTH, BENCH_DIR, PYTHON, Target, llmtap_env

START, END = "<!-- catchup:start -->", "<!-- catchup:end -->"
TARGET_DRAIN_S = 120.0
"""The issue's bound: a 10-minute outage at 500 calls/s drained within 2 minutes."""


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        ) as conn:
            return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
    except sqlite3.Error:
        return -1  # the store is being created or migrated: not a number yet


def run_catchup(
    run_dir: Path, logs: Path, rate: float, outage_s: float, log: Any
) -> dict[str, Any]:
    data = run_dir / "catchup"
    shutil.rmtree(data, ignore_errors=True)
    env = llmtap_env(data)
    db = data / "records.db"
    drain_window_s = max(180.0, outage_s)
    samples: list[dict[str, float]] = []
    consumer: subprocess.Popen[bytes] | None = None
    with proxy_service(env, data, logs, "catchup-proxy"):
        check(Target("llmtap-proxy", PROXY_PORT, dict(AUTH)), bodies(run_dir)["json"])
        client = steady_load(PROXY_PORT, rate, outage_s + drain_window_s, None, settle_s=5.0)
        t0 = time.monotonic()
        published_at_start = 0
        started_at = drained_at = caught_up_at = None
        cpu_to_drain = 0.0
        consumer_rss = 0.0
        try:
            while client.poll() is None:
                now = time.monotonic() - t0
                published = int(proxy_metrics(PROXY_PORT).get("records_published_total", 0))
                stored = _stored(db)
                samples.append({"t_s": round(now, 1), "published": published, "stored": stored})
                if consumer is None and now >= outage_s:
                    published_at_start = published
                    log(
                        f"  catch-up: {published} records queued after {now:.0f} s without a "
                        "consumer; starting one"
                    )
                    consumer = subprocess.Popen(
                        [PYTHON, "-m", "llmtap", "--data-dir", str(data), "consume"],
                        env={**os.environ, **env},
                        cwd=BENCH_DIR,
                        stdout=(logs / "catchup-consumer.log").open("ab"),
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    started_at = now
                elif consumer is not None and started_at is not None:
                    if drained_at is None and stored >= published_at_start:
                        drained_at = now
                        cpu_to_drain = cpu_seconds(tree(consumer.pid))
                        consumer_rss = rss_bytes(tree(consumer.pid)) / 2**20
                        log(
                            f"  catch-up: backlog stored {drained_at - started_at:.1f} s after start"
                        )
                    if caught_up_at is None and 0 <= published - stored <= 2 * rate:
                        caught_up_at = now
                    if drained_at is not None and caught_up_at is not None:
                        break
                time.sleep(1.0)  # one sample a second: the figure is in seconds
            answered = proxy_metrics(PROXY_PORT)
        finally:
            # the client's own summary is not needed: the proxy's counters say what was answered
            client.terminate()
            client.wait(30)
            if consumer is not None:
                consumer.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    consumer.wait(60)
    drain_s = None if drained_at is None or started_at is None else drained_at - started_at
    catch_s = None if caught_up_at is None or started_at is None else caught_up_at - started_at
    # while draining, the consumer stored the backlog plus what kept arriving
    drain_rate = None if not drain_s else (published_at_start + rate * drain_s) / max(drain_s, 1e-9)
    result: dict[str, Any] = {
        "rate": rate,
        "outage_s": outage_s,
        "backlog": published_at_start,
        "drain_s": None if drain_s is None else round(drain_s, 1),
        "caught_up_s": None if catch_s is None else round(catch_s, 1),
        "drain_records_per_s": None if drain_rate is None else round(drain_rate),
        "consumer_cpu_s_to_drain": round(cpu_to_drain, 1),
        "consumer_rss_mb": round(consumer_rss, 1),
        "proxy": {
            name: int(answered.get(name, 0))
            for name in (
                "requests_total",
                "upstream_errors_total",
                "records_published_total",
                "records_spooled_total",
                "records_dropped_total",
            )
        },
        "samples": samples,
    }
    if drain_rate is not None and drain_rate > rate:
        # what a 10-minute outage at this rate would take with the measured drain rate
        result["ten_minute_outage_drain_s"] = round(600 * rate / (drain_rate - rate), 1)
    log(
        f"  catch-up: backlog {published_at_start} after {outage_s:.0f} s, stored in "
        f"{result['drain_s']} s ({result['drain_records_per_s']} records/s while {rate:.0f}/s "
        f"kept coming); caught up in {result['caught_up_s']} s"
    )
    update_section(BENCH_DIR / "RESULTS.md", render(result), START, END)
    return result


def render(r: dict[str, Any]) -> str:
    drain = r.get("drain_s")
    verdict = (
        "not drained"
        if drain is None
        else f"{'met' if drain <= TARGET_DRAIN_S else 'missed'} (target ≤ {TARGET_DRAIN_S:.0f} s)"
    )
    lines = [
        START,
        "## Catch-up after a consumer outage",
        "",
        f"`benchmarks/run --only catchup --catchup-outage-s {r['outage_s']:g}`: `llmtap proxy` "
        f"(embedded queue, pinned to the gateway core) answered {r['rate']:g} calls/s for "
        f"{r['outage_s']:g} s with no consumer, then `llmtap consume` (embedded stores, not "
        f"pinned) started while the traffic went on; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| backlog at start | stored in | drain rate (records/s) | caught up (≤ 2 s behind) in |"
        " consumer CPU to drain | consumer RSS |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {r['backlog']:,} | {drain} s | {r.get('drain_records_per_s')} |"
        f" {r.get('caught_up_s')} s | {r.get('consumer_cpu_s_to_drain')} s |"
        f" {r.get('consumer_rss_mb')} MB |",
        "",
        f"Backlog drained: {verdict}.",
    ]
    if "ten_minute_outage_drain_s" in r and r["outage_s"] < 600:
        lines.append(
            f"A 10-minute outage at this rate ({int(600 * r['rate']):,} records) would take "
            f"{r['ten_minute_outage_drain_s']} s at the measured drain rate (extrapolated: run "
            "with `--catchup-outage-s 600` to measure it)."
        )
    lines += ["", END, ""]
    return "\n".join(lines)
