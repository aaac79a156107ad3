"""The logging pipeline: how many records one consumer process sustains, how soon a call is
queryable, and whether the proxy's memory stays flat over a long steady run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.overhead import MODEL, PROMPT, bodies, check, proxy_metrics, stream_run
from bench.procs import Service, listening_pid, rss_bytes
from bench.profile import fold
from bench.targets import (
    AUTH,
    BENCH_DIR,
    CHAT_PATH,
    GATEWAY_CORE,
    LOAD_CORE,
    PORTS,
    PYTHON,
    ROOT,
    Target,
    gateway_service,
    llmtap_env,
)
from bench.wrk import Load, run_wrk

PROXY_PORT = PORTS["llmtap"]


def proxy_service(env: dict[str, str], data: Path, logs: Path, name: str) -> Service:
    argv = [PYTHON, "-m", "llmtap", "--data-dir", str(data), "proxy"]
    argv += ["--host", "127.0.0.1", "--port", str(PROXY_PORT)]
    return Service(name, argv, PROXY_PORT, GATEWAY_CORE, logs / f"{name}.log", env=env)


def fill(
    env: dict[str, str],
    data: Path,
    run_dir: Path,
    logs: Path,
    seconds: float,
    log: Any,
    drain_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Fill the queue through the real proxy (no consumer running): half plain calls, half
    streams, so the records and bodies are what the consumer meets in production. Then wait until
    the proxy's shipper has published every record (its backlog drained), which is itself a
    measure: how fast one proxy process ships records into these stores."""
    t = Target("llmtap-proxy", PROXY_PORT, dict(AUTH))
    files = bodies(run_dir)
    with proxy_service(env, data, logs, "fill-proxy"):
        check(t, files["json"])
        started = time.monotonic()
        plain = run_wrk(
            Load(t.url, t.headers, files["json"]),
            connections=16,
            duration_s=seconds / 2,
            core=LOAD_CORE,
        )
        streams = stream_run(t, files["stream"], 16, seconds / 2)
        load_s = time.monotonic() - started
        deadline = time.monotonic() + drain_timeout_s
        metrics = proxy_metrics(PROXY_PORT)
        while time.monotonic() < deadline and metrics.get("shipper_backlog", 0) > 0:
            time.sleep(0.2)  # polling the proxy's own counter: the condition we wait on
            metrics = proxy_metrics(PROXY_PORT)
        shipped_s = time.monotonic() - started
    answered = metrics.get("requests_total", 0.0)
    published = metrics.get("records_published_total", 0.0)
    result = {
        "answered": int(answered),
        "plain_calls": int(plain["requests"]),
        "streamed_calls": int(streams["requests"]),
        "published": int(published),
        "spooled": int(metrics.get("records_spooled_total", 0)),
        "dropped": int(metrics.get("records_dropped_total", 0)),
        "backlog_left": int(metrics.get("shipper_backlog", 0)),
        "load_s": load_s,
        "shipped_s": shipped_s,
        "answered_per_s": answered / load_s if load_s else 0.0,
        "shipped_per_s": published / shipped_s if shipped_s else 0.0,
    }
    log(
        f"  filled: {result['answered']} calls answered in {load_s:.0f}s, {result['published']}"
        f" records published in {shipped_s:.0f}s ({result['shipped_per_s']:.0f}/s shipped by one"
        f" proxy process), backlog left {result['backlog_left']}"
    )
    return result


def consume(
    env: dict[str, str], expect: int, run_dir: Path, label: str, timeout_s: float
) -> dict[str, Any]:
    """One consumer process, pinned to the gateway core, under py-spy (sampling, ~1% cost)."""
    raw = run_dir / f"profile-consumer-{label}.txt"
    cfg = {"expect": expect, "timeout_s": timeout_s, "idle_s": 60}
    spy = str(ROOT / ".venv" / "bin" / "py-spy")
    argv = [
        "taskset",
        "-c",
        GATEWAY_CORE,
        spy,
        "record",
        "--format",
        "raw",
        "-o",
        str(raw),
        "--rate",
        "200",
        "--",
        PYTHON,
        "-m",
        "bench.consume_rate",
        json.dumps(cfg),
    ]
    out = subprocess.run(
        argv,
        capture_output=True,
        timeout=timeout_s + 120,
        cwd=BENCH_DIR,
        check=False,
        env={**os.environ, **env},
    )
    lines = [ln for ln in out.stdout.decode().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"consumer run failed: {out.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if raw.exists():
        result["profile"] = fold(raw)
    return result


def embedded_throughput(run_dir: Path, logs: Path, fill_s: float, log: Any) -> dict[str, Any]:
    data = run_dir / "pipeline-embedded"
    shutil.rmtree(data, ignore_errors=True)
    env = llmtap_env(data)
    filled = fill(env, data, run_dir, logs, fill_s, log)
    produced = filled["published"]
    result = consume(env, produced, run_dir, "embedded", 600)
    result["fill"] = filled
    result["stores"] = "sqlite queue -> sqlite records (+ sinks open_sinks() returns) + file bodies"
    log(
        f"  embedded consumer: {result['records_per_s']:.0f} records/s "
        f"({result['processed']}/{produced} in {result['seconds']:.1f}s)"
    )
    return result


def services_env(log: Any) -> dict[str, str]:
    """Start (or reuse) Postgres, Kafka and SeaweedFS with the project's script."""
    script = ROOT / "scripts" / "services" / "all.sh"
    out = subprocess.run([str(script), "start"], capture_output=True, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"services did not start: {out.stderr.decode()[-2000:]}")
    env: dict[str, str] = {}
    for line in out.stdout.decode().splitlines():
        if line.startswith("export "):
            # one line may export several NAME=value words
            for word in shlex.split(line.removeprefix("export ")):
                name, _, value = word.partition("=")
                env[name] = value
    log(f"  services: {', '.join(sorted(env))}")
    return env


def fresh_database(url: str, name: str) -> str:
    import psycopg  # the project's own dependency

    plain = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(url, name)


def _with_db(url: str, name: str) -> str:
    head, sep, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}{sep}{query}"


def distributed_throughput(
    run_dir: Path, logs: Path, fill_s: float, timeout_s: float, stamp: str, log: Any
) -> dict[str, Any]:
    services = services_env(log)
    pg = services["LLMTAP_TEST_POSTGRES_URL"]
    records_url = fresh_database(pg, "llmtap_bench")
    data = run_dir / "pipeline-distributed"
    shutil.rmtree(data, ignore_errors=True)
    env = {
        **llmtap_env(data),
        **{k: v for k, v in services.items() if not k.startswith("LLMTAP_TEST_")},
        "LLMTAP_QUEUE_URL": f"kafka://{services['LLMTAP_TEST_KAFKA_BOOTSTRAP']}",
        "LLMTAP_RECORDS_URL": records_url,
        "LLMTAP_BODIES_URL": f"s3://llmtap-bench?endpoint={services['LLMTAP_TEST_S3_ENDPOINT']}",
        "LLMTAP_TOPIC": f"bench-{stamp}",
        "LLMTAP_DLQ_TOPIC": f"bench-{stamp}-dlq",
        "LLMTAP_CONSUMER_GROUP": f"bench-{stamp}",
    }
    filled = fill(env, data, run_dir, logs, fill_s, log, drain_timeout_s=timeout_s)
    produced = filled["published"]
    result = consume(env, produced, run_dir, "distributed", timeout_s)
    result["fill"] = filled
    result["stores"] = "kafka -> postgres records (+ open_sinks()) + seaweedfs s3 bodies"
    log(
        f"  distributed consumer: {result['records_per_s']:.0f} records/s "
        f"({result['processed']}/{produced} in {result['seconds']:.1f}s)"
    )
    # the same topic again, by two consumers of a new group into a fresh database
    two = {
        **env,
        "LLMTAP_RECORDS_URL": fresh_database(pg, "llmtap_bench_two"),
        "LLMTAP_CONSUMER_GROUP": f"bench-{stamp}-two",
    }
    result["two_consumers"] = consume_group(two, produced, 2, timeout_s)
    log(
        f"  two distributed consumers: {result['two_consumers']['records_per_s']:.0f} records/s "
        f"together ({result['two_consumers']['processed']}/{produced})"
    )
    return result


def consume_group(
    env: dict[str, str], expect: int, members: int, timeout_s: float
) -> dict[str, Any]:
    """``members`` consumer processes of one group draining the topic together, unpinned (each
    may use either core, as the services do); the rate is every record over the time from the
    first member's start to the last one's last record."""
    run_env = {**os.environ, **env}
    # migrate once, before the members start, so they do not race to create the schema
    migrate = "import sys; from llmtap.stores.factory import open_records_store as o; o(sys.argv[1]).close()"
    subprocess.run(
        [PYTHON, "-c", migrate, env["LLMTAP_RECORDS_URL"]], env=run_env, check=True, timeout=120
    )
    # each stops once its share is done and the group has gone quiet (15 s covers the first rebalance)
    cfg = {"expect": expect // members // 2, "timeout_s": timeout_s, "idle_s": 15}
    argv = [PYTHON, "-m", "bench.consume_rate", json.dumps(cfg)]
    procs = [
        subprocess.Popen(
            ["taskset", "-c", "0-1", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=BENCH_DIR,
            env=run_env,
        )
        for _ in range(members)
    ]
    each: list[dict[str, Any]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout_s + 120)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"a group member failed: {err.decode()[-3000:]}")
        each.append(json.loads(lines[-1]))
    processed = sum(m["processed"] for m in each)
    seconds = max(m["done_wall"] for m in each) - min(m["start_wall"] for m in each)
    cpu_s = sum(m["cpu_s"] for m in each)
    return {
        "members": members,
        "processed": processed,
        "expected": expect,
        "seconds": seconds,
        "records_per_s": processed / seconds if seconds > 0 else 0.0,
        "records_per_cpu_s": processed / cpu_s if cpu_s else 0.0,
        "each": [
            {k: m[k] for k in ("processed", "seconds", "records_per_s", "cpu_s", "dead_lettered")}
            for m in each
        ],
    }


def steady_load(
    port: int, rate: float, duration_s: float, records_db: Path | None, settle_s: float = 30.0
) -> subprocess.Popen[bytes]:
    cfg = {
        "port": port,
        "path": CHAT_PATH,
        "headers": dict(AUTH),
        "body": {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]},
        "rate": rate,
        "duration_s": duration_s,
        "connections": 64,
        "records_db": str(records_db) if records_db else None,
        "settle_s": settle_s,
    }
    argv = ["taskset", "-c", LOAD_CORE, PYTHON, "-m", "bench.freshness_client", json.dumps(cfg)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=BENCH_DIR)


def finish(proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout_s)
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"load client failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def freshness(
    run_dir: Path, logs: Path, rate: float, duration_s: float, log: Any
) -> dict[str, Any]:
    """``llmtap serve`` (embedded, on the gateway core) at a steady rate; freshness measured at
    the records store (the query API is not there yet)."""
    with gateway_service("llmtap", logs, run_dir) as gw:
        check(Target("llmtap", PROXY_PORT, dict(AUTH)), bodies(run_dir)["json"])
        db = run_dir / "llmtap-data" / "records.db"
        result = finish(steady_load(PROXY_PORT, rate, duration_s, db), duration_s + 120)
        result["gateway_rss_mb"] = rss_bytes(gw.pids) / 2**20
    f = result.get("freshness_ms", {})
    log(
        f"  freshness at {rate:.0f} req/s: p50 {f.get('50', float('nan')):.0f} ms, "
        f"p99 {f.get('99', float('nan')):.0f} ms; {result.get('never_seen')} never seen, "
        f"{result['errors']} errors"
    )
    return result


def soak(
    run_dir: Path, logs: Path, rate: float, duration_s: float, sample_s: float, log: Any
) -> dict[str, Any]:
    """A long steady run; RSS of the proxy process (and the backend) sampled throughout."""
    samples: list[dict[str, float]] = []
    with gateway_service("llmtap", logs, run_dir) as gw:
        check(Target("llmtap", PROXY_PORT, dict(AUTH)), bodies(run_dir)["json"])
        db = run_dir / "llmtap-data" / "records.db"
        proxy_pid = listening_pid(PROXY_PORT, gw.pids)
        client = steady_load(PROXY_PORT, rate, duration_s, db, settle_s=60.0)
        t0 = time.monotonic()
        while client.poll() is None and time.monotonic() - t0 < duration_s + 120:
            pids = gw.pids
            proxy = rss_bytes([proxy_pid]) if proxy_pid else 0
            samples.append(
                {
                    "t_s": round(time.monotonic() - t0, 1),
                    "proxy_rss_mb": round(proxy / 2**20, 1),
                    "all_rss_mb": round(rss_bytes(pids) / 2**20, 1),
                }
            )
            if len(samples) % 6 == 0:
                log(
                    f"  soak t={samples[-1]['t_s']:.0f}s proxy {samples[-1]['proxy_rss_mb']} MB"
                    f" total {samples[-1]['all_rss_mb']} MB"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                client.wait(timeout=sample_s)
        load = finish(client, 180)
    steady = [s["proxy_rss_mb"] for s in samples if s["t_s"] >= min(60.0, duration_s / 5)]
    verdict: dict[str, Any] = {}
    if len(steady) >= 4:
        quarter = max(1, len(steady) // 4)
        first, last = steady[:quarter], steady[-quarter:]
        growth = (sum(last) / len(last)) / (sum(first) / len(first)) - 1
        verdict = {"growth_after_warmup": round(growth, 4), "flat": abs(growth) < 0.10}
    log(f"  soak: {verdict}")
    return {
        "rate": rate,
        "duration_s": duration_s,
        "samples": samples,
        "load": load,
        **verdict,
        "proxy_pid_found": proxy_pid is not None,
    }


__all__ = ["distributed_throughput", "embedded_throughput", "freshness", "soak"]
