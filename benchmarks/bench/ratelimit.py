"""The "rate limits" part: what a rate-limit check adds to a call at c=1, embedded and with Redis,
in the same run as the plain proxy.

Two ``llmtap proxy`` processes on the gateway core (the hot path alone, as in the overhead
part's ``llmtap-proxy``): one keeps its counters in ``<data_dir>/ratelimits.db``, the other in
Redis (``LLMTAP_CACHE_URL``; ``LLMTAP_BENCH_REDIS_URL`` or the test services' Redis). Each is
loaded with plain calls and with calls carrying ``Helicone-RateLimit-Policy`` (a quota no run
reaches, so every call is checked and passes). The issue's targets: ≤ 0.1 ms embedded, ≤ 0.5 ms
with Redis; a plain call costs what it did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.overhead import bodies, check
from bench.procs import Service, Usage
from bench.targets import AUTH, GATEWAY_CORE, LOAD_CORE, PYTHON, Target, llmtap_env
from bench.wrk import Load, run_wrk

PORTS = {"embedded": 18130, "redis": 18131}
POLICY = {"Helicone-RateLimit-Policy": "1000000000;w=31536000"}
DEFAULT_REDIS = "redis://127.0.0.1:6390/0"


def _proxy(store: str, run_dir: Path, logs: Path) -> Service:
    data = run_dir / f"ratelimit-{store}-data"
    if data.exists():
        shutil.rmtree(data)
    env = llmtap_env(data)
    if store == "redis":
        env["LLMTAP_CACHE_URL"] = os.environ.get("LLMTAP_BENCH_REDIS_URL", DEFAULT_REDIS)
    argv = [PYTHON, "-m", "llmtap", "--data-dir", str(data), "proxy"]
    argv += ["--host", "127.0.0.1", "--port", str(PORTS[store])]
    name = f"llmtap-proxy-ratelimit-{store}"
    return Service(name, argv, PORTS[store], GATEWAY_CORE, logs / f"{name}.log", env=env)


def _c1(gw: Service, t: Target, body: Path, duration_s: float) -> dict[str, Any]:
    load = Load(t.url, t.headers, body)
    run_wrk(load, connections=1, duration_s=1, core=LOAD_CORE)  # warm-up: lazy imports, the store
    with Usage(gw) as usage:
        r = run_wrk(load, connections=1, duration_s=duration_s, core=LOAD_CORE)
    lat = r["latency_us"]
    return {
        "rps": round(r["rps"]),
        "p50_ms": lat["50"] / 1000,
        "p99_ms": lat["99"] / 1000,
        "errors": r["errors_total"],
        # CPU per call: what the check costs the gateway, robust to a busy machine
        "gateway_cpu_us_per_call": round(1e6 * usage.cpu_s / r["requests"])
        if r["requests"]
        else None,
    }


def run_ratelimit(run_dir: Path, logs: Path, duration_s: float, log: Any) -> dict[str, Any]:
    body = bodies(run_dir)["json"]
    out: dict[str, Any] = {}
    for store in ("embedded", "redis"):
        try:
            with _proxy(store, run_dir, logs) as gw:
                runs = {}
                for label, headers in (("plain", {}), ("ratelimit", POLICY)):
                    t = Target(f"{store}-{label}", PORTS[store], {**AUTH, **headers})
                    check(t, body)
                    runs[label] = _c1(gw, t, body, duration_s)
                    log(f"  {store:8s} {label:9s} c=1 {runs[label]}")
        except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
            log(f"  {store} FAILED: {exc}")
            out[store] = {"error": str(exc)[:2000]}
            continue
        runs["added_p50_ms"] = runs["ratelimit"]["p50_ms"] - runs["plain"]["p50_ms"]
        runs["added_p99_ms"] = runs["ratelimit"]["p99_ms"] - runs["plain"]["p99_ms"]
        plain_cpu, limited_cpu = (
            runs[k]["gateway_cpu_us_per_call"] for k in ("plain", "ratelimit")
        )
        if plain_cpu is not None and limited_cpu is not None:
            runs["added_cpu_us_per_call"] = limited_cpu - plain_cpu
        log(f"  {store}: a rate-limit check adds {runs['added_p50_ms']:.3f} ms at p50")
        out[store] = runs
    return out
