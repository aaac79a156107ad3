"""``benchmarks/run``: every benchmark in one command; see benchmarks/README.md."""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import sections, soak_report
from bench.catchup import run_catchup
from bench.dashboard import render_section, run_dashboard, update_results
from bench.faults_soak import run_faults_soak
from bench.gateway_cache import run_cache
from bench.machine import machine
from bench.overhead import added_latency, passthrough, run_overhead
from bench.pipeline import distributed_throughput, embedded_throughput, freshness, soak
from bench.ratelimit import run_ratelimit
from bench.report import render
from bench.targets import (
    BENCH_DIR,
    GATEWAY_CORE,
    GATEWAYS,
    LOAD_CORE,
    UNPINNED,
    WORK,
    mock_service,
)
from bench.tls import TLS_GATEWAYS, make_certs, tls_mock_service

RESULTS = BENCH_DIR / "results"


def guarded(
    log: Callable[[str], None], fn: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """One part failing (a service that would not start) is reported, and the rest still runs."""
    try:
        return fn(*args)
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        log(f"  FAILED: {exc}")
        return {"error": str(exc)[:3000]}


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run")
    parser.add_argument("--quick", action="store_true", help="short runs (about 8 minutes)")
    parser.add_argument("--soak", action="store_true", help="also the 10-minute memory run")
    parser.add_argument(
        "--only",
        default="overhead,passthrough,pipeline,freshness",
        help="comma-separated parts: overhead, passthrough, pipeline, distributed, freshness,"
        " soak, dashboard, tls, ratelimit, cache, faults-soak, catchup",
    )
    parser.add_argument(
        "--dashboard-rows",
        type=int,
        default=1_000_000,
        help="rows seeded for the dashboard part (kept under .work/dashboard for the next run)",
    )
    parser.add_argument("--gateways", default=",".join(GATEWAYS))
    parser.add_argument("--duration", type=float, default=None, help="seconds per load run")
    parser.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="length of the soak (default 600) or of the faults soak (default 3600)",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="faults soak: calls per second")
    parser.add_argument(
        "--fault-every", type=float, default=300.0, help="faults soak: seconds between faults"
    )
    parser.add_argument(
        "--queue-retention-s", type=float, default=300.0, help="faults soak: the queue's retention"
    )
    parser.add_argument(
        "--queue-disk-mib", type=int, default=512, help="faults soak: the queue's own tmpfs"
    )
    parser.add_argument(
        "--catchup-outage-s",
        type=float,
        default=None,
        help="catch-up: seconds without a consumer at 500 calls/s (default 600; 60 with --quick)",
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="only rewrite RESULTS.md from this results JSON"
    )
    args = parser.parse_args()
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        if str(saved.get("mode", "")).startswith("faults-soak"):
            date = str(saved["machine"]["date_utc"])[:10]
            machine_then = {**saved["machine"], "loadavg": saved["loadavg_end"]}
            section = soak_report.render_section(
                saved["faults_soak"], machine_then, date, args.report.name
            )
            soak_report.update_results(BENCH_DIR / "RESULTS.md", section)
        else:
            write_report(saved, args.report)
        return 0

    parts = set(args.only.split(","))
    if args.soak:
        parts.add("soak")
    if not args.quick and "pipeline" in parts:
        parts.add("distributed")
    duration = args.duration or (5.0 if args.quick else 15.0)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = WORK / "runs" / stamp
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {msg}", flush=True)

    report: dict[str, Any] = {
        "loadavg_start": loadavg(),
        "machine": machine(),
        "mode": "faults-soak" if parts == {"faults-soak"} else "quick" if args.quick else "full",
        "duration_s_per_run": duration,
        "layout": {
            "gateway_core": GATEWAY_CORE,
            "load_core": LOAD_CORE,
            "pinned": not UNPINNED,
            "note": "nothing pinned: every process on both cores"
            if UNPINNED
            else "gateway under test pinned to core 1; mock upstream and load generator on core 0",
        },
    }
    log(f"machine: {json.dumps(report['machine'])}")
    gateways = [g for g in args.gateways.split(",") if g]
    # the dashboard part needs no mock upstream (it reads seeded stores)
    needs_mock = bool(parts - {"dashboard"})
    with mock_service(logs) if needs_mock else contextlib.nullcontext():
        if "overhead" in parts:
            overhead = run_overhead(gateways, run_dir, logs, [1, 16, 64], duration, log)
            report["profile_proxy"] = overhead.pop("_profiles")
            report["overhead"] = overhead
            report["added_latency_ms"] = added_latency(overhead)
        if "tls" in parts:
            log("through TLS: the mock upstream over TLS, nginx and llmtap in front of it")
            with tls_mock_service(logs, make_certs(run_dir / "tls")):
                tls = run_overhead(list(TLS_GATEWAYS), run_dir, logs, [1, 16, 64], duration, log)
            tls.pop("_profiles")
            report["tls"] = {"overhead": tls, "added_latency_ms": added_latency(tls)}
        if "ratelimit" in parts:
            log("rate limits: the check's cost at c=1, embedded and with Redis")
            report["ratelimit"] = guarded(log, run_ratelimit, run_dir, logs, duration, log)
        if "cache" in parts:
            log("cache hits: llmtap proxy answering from its response cache, next to plain calls")
            report["cache"] = guarded(log, run_cache, run_dir, logs, duration, log)
        if "passthrough" in parts:
            log("streams pass through: 5 chunks 20 ms apart")
            report["passthrough"] = passthrough(
                [g for g in gateways if g in ("nginx", "llmtap", "llmtap-proxy")],
                run_dir,
                logs,
                3.0,
                log,
            )
        if "pipeline" in parts:
            log("pipeline: embedded stores")
            report["pipeline_embedded"] = guarded(
                log, embedded_throughput, run_dir, logs, 10.0 if args.quick else 30.0, log
            )
        if "distributed" in parts:
            log("pipeline: Kafka -> Postgres + S3")
            report["pipeline_distributed"] = guarded(
                log,
                distributed_throughput,
                run_dir,
                logs,
                5.0 if args.quick else 10.0,
                120.0 if args.quick else 240.0,
                stamp,
                log,
            )
        if "freshness" in parts:
            log("freshness: llmtap serve at 500 req/s")
            report["freshness"] = guarded(
                log, freshness, run_dir, logs, 500.0, 10.0 if args.quick else 60.0, log
            )
        if "catchup" in parts:
            outage = args.catchup_outage_s or (60.0 if args.quick else 600.0)
            log(f"catch-up: {outage:.0f} s without a consumer at 500 calls/s, then one starts")
            report["catchup"] = guarded(log, run_catchup, run_dir, logs, 500.0, outage, log)
        if "soak" in parts:
            seconds = args.soak_seconds or 600.0
            log(f"soak: llmtap serve at 500 req/s for {seconds:.0f} s")
            report["soak"] = guarded(log, soak, run_dir, logs, 500.0, seconds, 10.0, log)
        if "faults-soak" in parts:
            seconds = args.soak_seconds or 3600.0
            log(f"faults soak: llmtap serve at {args.rate:g} calls/s for {seconds:.0f} s")
            report["faults_soak"] = guarded(
                log,
                run_faults_soak,
                run_dir,
                logs,
                args.rate,
                seconds,
                args.fault_every,
                args.queue_retention_s,
                args.queue_disk_mib,
                log,
            )
            if report["mode"] == "faults-soak" and "error" not in report["faults_soak"]:
                report["mode"] += "-" + report["faults_soak"]["settings"]["kind"]
    if "dashboard" in parts:
        log(f"dashboard: the pages' queries at {args.dashboard_rows:,} rows")
        report["dashboard"] = guarded(log, run_dashboard, log, logs, args.dashboard_rows)
    report["runtime_s"] = round(time.monotonic() - started)
    report["loadavg_end"] = loadavg()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stamp}-{report['mode']}.json"
    report["file"] = out.name
    out.write_text(json.dumps(report, indent=2))
    if "dashboard" in report and "error" not in report["dashboard"]:
        date = datetime.now(UTC).strftime("%Y-%m-%d")
        section = render_section(report["dashboard"], report["machine"], date)
        update_results(BENCH_DIR / "RESULTS.md", section)
        log("wrote the dashboard section of benchmarks/RESULTS.md")
    if "faults_soak" in report and "error" not in report["faults_soak"]:
        date = datetime.now(UTC).strftime("%Y-%m-%d")
        machine_now = {**report["machine"], "loadavg": report["loadavg_end"]}
        section = soak_report.render_section(report["faults_soak"], machine_now, date, out.name)
        soak_report.update_results(BENCH_DIR / "RESULTS.md", section)
        log("wrote the faults soak section of benchmarks/RESULTS.md")
    if "overhead" in parts:
        write_report(report, out)
        log(f"wrote {out.relative_to(BENCH_DIR.parent)} and benchmarks/RESULTS.md")
    else:
        # a partial run must not replace the full report
        log(
            f"wrote {out.relative_to(BENCH_DIR.parent)} (the main report in RESULTS.md left as it was)"
        )
    return 0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def write_report(report: dict[str, Any], source: Path) -> None:
    report.setdefault("file", source.name)
    results = BENCH_DIR / "RESULTS.md"
    # measured by their own parts (dashboard, faults soak, outbox, consumer profile...): a full
    # report keeps them
    kept = sections.all_kept(results)
    text = render(report, BENCH_DIR / "FINDINGS.md").rstrip("\n") + "\n"
    for section in filter(None, kept):
        text += "\n" + section
    results.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
