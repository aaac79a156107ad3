"""Proxy overhead: the same load against the mock directly and through each gateway.

For every target: non-streamed calls with wrk and streamed calls with the stream client, at each
concurrency; the gateway's CPU and peak RSS during each run; the load generator's own CPU.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.procs import Service, Usage, listening_pid
from bench.profile import fold
from bench.targets import (
    LOAD_CORE,
    ROOT,
    Target,
    gateway_service,
    stream_client_argv,
    target,
)
from bench.wrk import Load, run_wrk

MODEL = "gpt-4o-mini"
PROMPT = "Say hello to the benchmark in a few short words please"


def bodies(run_dir: Path) -> dict[str, Path]:
    out = {}
    for mode, stream in (("json", False), ("stream", True)):
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            body["stream"] = True
        path = run_dir / f"body-{mode}.json"
        path.write_text(json.dumps(body))
        out[mode] = path
    return out


def check(t: Target, body: Path, timeout_s: float = 60.0) -> None:
    """One call must succeed before load starts (the gateway is ready and routes to the mock)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
        try:
            conn.request(
                "POST", t.path, body.read_bytes(), {**t.headers, "Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 200 and b"chat.completion" in data:
                return
            last = f"{resp.status} {data[:300]!r}"
        except OSError as exc:
            last = str(exc)
        finally:
            conn.close()
        time.sleep(0.5)
    raise RuntimeError(f"{t.name}: no good answer within {timeout_s}s: {last}")


def proxy_metrics(port: int) -> dict[str, float]:
    """llmtap's own counters (``/_llmtap/metrics``): records published, dropped, backlog."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/_llmtap/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return {}
    finally:
        conn.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            out[name.removeprefix("llmtap_proxy_")] = float(value)
    return out


def stream_run(
    t: Target,
    body: Path,
    concurrency: int,
    duration_s: float,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    cfg = {
        "host": "127.0.0.1",
        "port": t.port,
        "path": t.path,
        "headers": {**t.headers, **(extra_headers or {})},
        "body": body.read_text(),
        "concurrency": concurrency,
        "duration_s": duration_s,
        "warmup_s": 1.0,
    }
    out = subprocess.run(
        [*stream_client_argv(), json.dumps(cfg)],
        capture_output=True,
        timeout=duration_s + 120,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"stream client failed: {out.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def measure_target(
    name: str,
    gateway: Service | None,
    run_dir: Path,
    concurrencies: list[int],
    duration_s: float,
    log: Any,
) -> dict[str, Any]:
    t = target(name)
    files = bodies(run_dir)
    check(t, files["json"])
    results: dict[str, Any] = {"json": {}, "stream": {}}
    watched: Service | int | None = gateway
    for mode in ("json", "stream"):
        for c in concurrencies:
            # a short warm-up so connection set-up and lazy imports are not measured
            if mode == "json":
                run_wrk(
                    Load(t.url, t.headers, files["json"]),
                    connections=c,
                    duration_s=1,
                    core=LOAD_CORE,
                )
            usage = Usage(watched) if watched is not None else None
            if usage is not None:
                usage.__enter__()
            try:
                if mode == "json":
                    r = run_wrk(
                        Load(t.url, t.headers, files["json"]),
                        connections=c,
                        duration_s=duration_s,
                        core=LOAD_CORE,
                    )
                else:
                    r = stream_run(t, files["stream"], c, duration_s)
            finally:
                if usage is not None:
                    usage.__exit__(None, None, None)
            if usage is not None:
                r["gateway_cpu_percent"] = usage.cpu_percent
                r["gateway_peak_rss_mb"] = usage.peak_rss / 2**20
                # CPU per answered call: robust to a busy machine where latency is not
                r["gateway_cpu_us_per_call"] = (
                    1e6 * usage.cpu_s / r["requests"] if r["requests"] else None
                )
            if name.startswith("llmtap"):
                r["llmtap_metrics"] = proxy_metrics(t.port)
            results[mode][str(c)] = r
            log(f"  {name:8s} {mode:6s} c={c:<3d} {summary(mode, r)}")
    return results


def summary(mode: str, r: dict[str, Any]) -> str:
    if mode == "json":
        lat = r["latency_us"]
        text = (
            f"{r['rps']:8.0f} rps  p50 {lat['50'] / 1000:.3f} ms  p99 {lat['99'] / 1000:.3f} ms"
            f"  errors {r['errors_total']}  wrk cpu {r['cpu_percent']:.0f}%"
        )
    else:
        text = (
            f"{r['rps']:8.0f} rps  ttft p50 {r['ttft_ms'].get('50', 0):.3f} ms"
            f"  p99 {r['ttft_ms'].get('99', 0):.3f} ms  errors {r['errors_total']}"
            f"  client cpu {r['cpu_percent']:.0f}%"
        )
    if "gateway_cpu_percent" in r:
        text += f"  gw cpu {r['gateway_cpu_percent']:.0f}% rss {r['gateway_peak_rss_mb']:.0f} MB"
        text += f" {r['gateway_cpu_us_per_call'] or 0:.0f} us/call"
    return text


def run_overhead(
    names: list[str],
    run_dir: Path,
    logs: Path,
    concurrencies: list[int],
    duration_s: float,
    log: Any,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    results["_profiles"] = profiles
    for name in ["direct", *names]:
        log(f"overhead: {name}")
        if name == "direct":
            results[name] = measure_target(name, None, run_dir, concurrencies, duration_s, log)
            continue
        try:
            with gateway_service(name, logs, run_dir) as gw:
                results[name] = measure_target(name, gw, run_dir, concurrencies, duration_s, log)
                if name in ("llmtap", "llmtap-proxy"):
                    profiles[name] = profile_proxy(name, gw, run_dir, duration_s)
                    profiles[f"{name} {STREAMED}"] = profile_proxy(
                        name, gw, run_dir, duration_s, streamed=True
                    )
        except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
            log(f"  {name} FAILED: {exc}")
            results[name] = {"error": str(exc)[:2000]}
    return results


STREAMED = "streamed"
"""The profile of a gateway's streamed run is ``profile_proxy[f"{name} {STREAMED}"]``."""


def profile_proxy(
    name: str, gw: Service, run_dir: Path, seconds: float, *, streamed: bool = False
) -> dict[str, Any]:
    """py-spy on the process that holds the listening socket, during a c=64 run, non-streamed
    (wrk) or streamed (the stream client); a separate run: the measured ones are not sampled."""
    t = target(name)
    pid = listening_pid(t.port, gw.pids)
    if pid is None:
        return {"error": "proxy process not found"}
    raw = run_dir / f"profile-{name}{'-stream' if streamed else ''}.txt"
    spy = str(ROOT / ".venv" / "bin" / "py-spy")
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250"]
    argv += ["--format", "raw", "-o", str(raw), "--nonblocking"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if streamed:
            stream_run(t, bodies(run_dir)["stream"], 64, seconds)
        else:
            run_wrk(
                Load(t.url, t.headers, bodies(run_dir)["json"]),
                connections=64,
                duration_s=seconds,
                core=LOAD_CORE,
            )
    finally:
        proc.wait(timeout=seconds + 60)
    return fold(raw) if raw.exists() else {"error": "py-spy wrote nothing"}


CHUNK_DELAY_MS = 20
CHUNKS = 5


def passthrough(
    names: list[str], run_dir: Path, logs: Path, duration_s: float, log: Any
) -> dict[str, Any]:
    """Do chunks leave the gateway as they arrive? The mock waits 20 ms before each of 5 content
    deltas: unbuffered, the first token arrives ~20 ms after the request and the last ~100 ms; a
    gateway that buffered the stream would show a TTFT close to the total."""
    knobs = {"x-mock-chunk-delay-ms": str(CHUNK_DELAY_MS), "x-mock-chunks": str(CHUNKS)}
    body = bodies(run_dir)["stream"]
    results: dict[str, Any] = {}
    for name in ["direct", *names]:
        t = target(name)
        try:
            if name == "direct":
                r = stream_run(t, body, 1, duration_s, knobs)
            else:
                with gateway_service(name, logs, run_dir):
                    check(t, bodies(run_dir)["json"])
                    r = stream_run(t, body, 1, duration_s, knobs)
        except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
            results[name] = {"error": str(exc)[:500]}
            continue
        ttft, total = r["ttft_ms"].get("50"), r["latency_ms"].get("50")
        results[name] = {"ttft_p50_ms": ttft, "total_p50_ms": total, "requests": r["requests"]}
        log(
            f"  {name:12s} chunk delay {CHUNK_DELAY_MS} ms: TTFT p50 {ttft} ms, total p50 {total} ms"
        )
    return results


def added_latency(results: dict[str, Any]) -> dict[str, Any]:
    """Gateway minus direct, per mode, concurrency and percentile (milliseconds)."""
    direct = results.get("direct", {})
    out: dict[str, Any] = {}
    for name, res in results.items():
        if name in ("direct", "_profiles") or "error" in res:
            continue
        out[name] = {"json": {}, "stream": {}}
        for c, r in res.get("json", {}).items():
            d = direct["json"][c]["latency_us"]
            out[name]["json"][c] = {
                q: (r["latency_us"][q] - d[q]) / 1000 for q in ("50", "95", "99")
            }
        for c, r in res.get("stream", {}).items():
            d = direct["stream"][c]
            if not r["ttft_ms"] or not d["ttft_ms"]:
                continue  # no successful call to compare (the run's errors say why)
            out[name]["stream"][c] = {
                "ttft": {q: r["ttft_ms"][q] - d["ttft_ms"][q] for q in ("50", "95", "99")},
                "total": {q: r["latency_ms"][q] - d["latency_ms"][q] for q in ("50", "95", "99")},
            }
    return out
