"""The "cache hit" part: what an answer from the gateway's response cache costs, in one run
against the same proxy process (``llmtap proxy`` on the gateway core).

For each store (embedded SQLite; Redis too when ``LLMTAP_TEST_REDIS_URL`` names a reachable
server), at c=1 and c=64, non-streamed (wrk) and streamed (the stream client):

* ``direct``: the mock upstream itself (the baseline "added" latency is measured from);
* ``plain``: a call through the proxy with no gateway header;
* ``hit``: the same call with ``Helicone-Cache-Enabled: true``, after one call filled the slot,
  so every measured call is answered from the cache (checked: ``cache_hits`` grows by the number
  of calls and the mock sees none of them).

Issue 14's targets: a hit adds <= 0.3 ms over a direct call at c=1, and sustains >= the plain
proxy's requests/s at c=64.

With ``LLMTAP_BENCH_BASE_SRC=<checkout>/src`` each store is measured a second time, in the same
run, with that checkout's proxy (rows ``<store> (base)``): plain and hit, before and after a change.
Each row also has the proxy's CPU time per call (``cpu_us``, its logging included: measured from
an empty shipper backlog to an empty one), less sensitive to other load than requests/s.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.overhead import bodies, check, proxy_metrics, stream_run
from bench.procs import Service
from bench.targets import (
    GATEWAY_CORE,
    LOAD_CORE,
    PORTS,
    PYTHON,
    Target,
    llmtap_env,
    target,
)
from bench.wrk import Load, run_wrk

CONCURRENCIES = (1, 64)
PAIRS_AT_TARGET = 3
"""Alternated plain/hit pairs for the target's row (JSON at c=64); its ratio is their median."""
CACHE_ON = {"Helicone-Cache-Enabled": "true"}


def _redis_url() -> str | None:
    url = os.environ.get("LLMTAP_TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1.0):
            return url
    except OSError:
        return None


def _proxy(name: str, logs: Path, run_dir: Path, cache_url: str, src: str | None) -> Service:
    data = run_dir / f"{name}-data"
    if data.exists():
        shutil.rmtree(data)
    port = PORTS["llmtap-proxy"]
    argv = [PYTHON, "-m", "llmtap", "--data-dir", str(data), "proxy"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    # llmtap_env runs this tree's src (not the venv's editable install, maybe another checkout's)
    env = {**llmtap_env(data), "LLMTAP_CACHE_URL": cache_url}
    if src is not None:
        env["PYTHONPATH"] = src  # an older checkout's proxy, with this venv's dependencies
    return Service(name, argv, port, GATEWAY_CORE, logs / f"{name}.log", env=env)


def _proxy_cpu_s(svc: Service) -> float:
    """CPU seconds (user + system) the proxy's processes have used so far."""
    total = 0
    for pid in svc.pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def _settle(port: int, timeout_s: float = 60.0) -> None:
    """Wait for the proxy's shipper to have logged every call so far: records the last run left
    behind would otherwise be shipped during (and charged to) the next one, always the hit."""
    deadline = time.monotonic() + timeout_s
    last = -1.0
    while time.monotonic() < deadline:
        m = proxy_metrics(port)
        # the gauge is set per batch: also wait for the last batch to be published
        published = m.get("records_published", 0) + m.get("records_dropped", 0)
        if m.get("shipper_backlog", 0) == 0 and published == last:
            return
        last = published
        time.sleep(0.1)


def _warm(t: Target, files: dict[str, Path], c: int, stream: bool) -> None:
    """Connections set up and lazy imports done before the measured run (not counted)."""
    if not stream:
        run_wrk(Load(t.url, t.headers, files["json"]), connections=c, duration_s=1, core=LOAD_CORE)


def _measure(
    t: Target, files: dict[str, Path], c: int, duration_s: float, stream: bool
) -> dict[str, Any]:
    if stream:
        return stream_run(t, files["stream"], c, duration_s)
    load = Load(t.url, t.headers, files["json"])
    return run_wrk(load, connections=c, duration_s=duration_s, core=LOAD_CORE)


def _row(r: dict[str, Any], stream: bool) -> dict[str, Any]:
    if stream:
        return {
            "rps": r["rps"],
            "p50_ms": r["latency_ms"].get("50"),
            "p99_ms": r["latency_ms"].get("99"),
            "ttft_p50_ms": r["ttft_ms"].get("50"),
            "errors": r["errors_total"],
            "requests": r["requests"],
        }
    lat = r["latency_us"]
    return {
        "rps": r["rps"],
        "p50_ms": lat["50"] / 1000,
        "p99_ms": lat["99"] / 1000,
        "errors": r["errors_total"],
        "requests": r["requests"],
    }


def _measure_kind(
    svc: Service, t: Target, files: dict[str, Path], c: int, duration_s: float, stream: bool
) -> dict[str, Any]:
    """One measured run of ``t`` with the proxy's CPU per call and its cache counters."""
    _warm(t, files, c, stream)
    _settle(t.port)
    before = proxy_metrics(t.port)
    cpu_before = _proxy_cpu_s(svc)
    r = _row(_measure(t, files, c, duration_s, stream), stream)
    _settle(t.port)
    cpu = _proxy_cpu_s(svc) - cpu_before
    after = proxy_metrics(t.port)
    r["cpu_us"] = 1e6 * cpu / r["requests"] if r["requests"] else 0.0
    for name in ("cache_hits", "cache_misses"):
        r[name] = after.get(f"{name}_total", 0) - before.get(f"{name}_total", 0)
    # calls that asked the store (a hit from memory does not); absent before the counter
    # existed (a base checkout): None
    lookups = after.get("cache_lookups_total")
    r["cache_lookups"] = None if lookups is None else lookups - before.get("cache_lookups_total", 0)
    return r


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (one run: itself), with every run's req/s beside it."""
    ranked = sorted(rows, key=lambda r: r["rps"])
    row = dict(ranked[(len(ranked) - 1) // 2])
    if len(rows) > 1:
        row["rps_runs"] = [r["rps"] for r in rows]
    return row


def run_cache(run_dir: Path, logs: Path, duration_s: float, log: Any) -> dict[str, Any]:
    files = bodies(run_dir)
    direct = target("direct")
    out: dict[str, Any] = {"direct": {}, "stores": {}}
    for mode in ("json", "stream"):
        for c in CONCURRENCIES:
            _warm(direct, files, c, mode == "stream")
            r = _row(_measure(direct, files, c, duration_s, mode == "stream"), mode == "stream")
            out["direct"][f"{mode}/{c}"] = r
            log(f"  direct      {mode:6s} c={c:<3d} {r['rps']:8.0f} rps  p50 {r['p50_ms']:.3f} ms")
    stores: dict[str, tuple[str, str | None]] = {"embedded": ("", None)}
    redis_url = _redis_url()
    if redis_url is not None:
        stores["redis"] = (redis_url, None)
    base_src = os.environ.get("LLMTAP_BENCH_BASE_SRC")
    if base_src:
        for store, (url, _) in list(stores.items()):
            stores[f"{store} (base)"] = (url, base_src)
    for store, (url, src) in stores.items():
        results: dict[str, Any] = {}
        name = "llmtap-proxy-cache-" + store.replace(" (base)", "-base")
        with _proxy(name, logs, run_dir, url, src) as svc:
            plain = target("llmtap-proxy")
            hit = Target(plain.name, plain.port, {**plain.headers, **CACHE_ON})
            check(plain, files["json"])
            check(hit, files["json"])  # fills the slot of the non-streamed call
            for mode in ("json", "stream"):
                stream = mode == "stream"
                if stream:  # fill the streamed call's slot before measuring hits
                    stream_run(hit, files["stream"], 1, 1.0)
                for c in CONCURRENCIES:
                    # The target's row (JSON at c=64) is measured in alternated pairs, the order
                    # flipped each time: one plain-then-hit pair put 0.95x on record where four
                    # alternated pairs minutes later measured 1.03-1.08x (every pair a win).
                    pairs = PAIRS_AT_TARGET if (mode, c) == ("json", 64) else 1
                    rounds: dict[str, list[dict[str, Any]]] = {"plain": [], "hit": []}
                    for pair in range(pairs):
                        kinds = (("plain", plain), ("hit", hit))
                        for kind, t in kinds if pair % 2 == 0 else kinds[::-1]:
                            r = _measure_kind(svc, t, files, c, duration_s, stream)
                            d = out["direct"][f"{mode}/{c}"]
                            r["added_p50_ms"] = r["p50_ms"] - d["p50_ms"]
                            rounds[kind].append(r)
                            log(
                                f"  {store:15s} {kind:5s} {mode:6s} c={c:<3d}"
                                f" {r['rps']:8.0f} rps  p50 {r['p50_ms']:.3f} ms"
                                f" (added {r['added_p50_ms']:+.3f})  hits {r['cache_hits']:.0f}"
                                f" misses {r['cache_misses']:.0f} lookups {r['cache_lookups']}"
                                f"  errors {r['errors']}  cpu {r['cpu_us']:.1f} us/call"
                            )
                    for kind, rows in rounds.items():
                        results[f"{kind}/{mode}/{c}"] = _median_row(rows)
                    if pairs > 1:
                        ratios = [
                            h["rps"] / p["rps"]
                            for p, h in zip(rounds["plain"], rounds["hit"], strict=True)
                            if p["rps"]
                        ]
                        results[f"ratio/{mode}/{c}"] = {
                            "pairs": ratios,
                            "median": statistics.median(ratios) if ratios else None,
                        }
        out["stores"][store] = results
    return out


def cache_section(r: dict[str, Any]) -> list[str]:
    """The "cache hit" rows of RESULTS.md."""
    part = r.get("cache")
    if not part:
        return []
    if "error" in part:
        return ["## Cache hits", "", f"**failed to run:** `{part['error'][:300]}`", ""]
    lines = [
        "## Cache hits",
        "",
        "`llmtap proxy` answering from its response cache (`Helicone-Cache-Enabled: true`, the"
        " slot filled beforehand; every measured call a hit) next to the same call with no"
        " gateway header, in one run. added = minus direct to the mock (ms). Targets (issue 14):"
        " a hit adds <= 0.3 ms at c=1; at c=64 a hit sustains >= the plain proxy's req/s.",
        "",
        "| store | mode | c | plain req/s | hit req/s | plain added p50 | hit added p50 |"
        " hit p99 | plain CPU µs/call | hit CPU µs/call | hits counted | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for store, res in part["stores"].items():
        for mode in ("json", "stream"):
            for c in CONCURRENCIES:
                p, h = res.get(f"plain/{mode}/{c}"), res.get(f"hit/{mode}/{c}")
                if not p or not h:
                    continue
                lines.append(
                    f"| {store} | {mode} | {c} | {p['rps']:.0f} | {h['rps']:.0f}"
                    f" | {p['added_p50_ms']:.3f} | {h['added_p50_ms']:.3f} | {h['p99_ms']:.3f}"
                    f" | {_cpu(p)} | {_cpu(h)}"
                    f" | {h['cache_hits']:.0f} | {p['errors'] + h['errors']} |"
                )
    notes = []
    for store, res in part["stores"].items():
        ratio = res.get("ratio/json/64")
        if ratio and ratio.get("median") is not None:
            pairs = ", ".join(f"{x:.2f}x" for x in ratio["pairs"])
            notes.append(
                f"- {store}, JSON at c=64: hit/plain req/s in {len(ratio['pairs'])} alternated"
                f" pairs {pairs}; median **{ratio['median']:.2f}x** (the table's row is each"
                " kind's median run)."
            )
    return [*lines, "", *notes, *([""] if notes else [])]


def _cpu(row: dict[str, Any]) -> str:
    return f"{row['cpu_us']:.1f}" if "cpu_us" in row else "-"
