"""The dashboard's queries at a million rows: seed once, then time each call the pages make.

``llmtap seed`` fills a data directory under ``.work/dashboard/`` (kept: the next run reuses it;
its ``seeded.json`` says how long seeding took and how big it is). ``llmtap api`` then serves
it on loopback, and each query in ``QUERIES`` (and each page in ``PAGES`` once the dashboard
exists) is run one at a time: best of 3, then p95 over ``runs``. Times are the client's on
loopback: the server's time plus a fraction of a millisecond of HTTP. Export is paged through
the search API (1000 rows a page, by cursor), and the API's RSS is read from /proc while it
serves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.targets import ROOT, WORK

PORT = 18_790
DAY_MS = 86_400_000
BEFORE_MS = {
    # the numbers (issue 12), measured the same way before this work
    "latest 50 requests": 6,
    "search, three clauses": 8,
    "metrics totals (24 h)": 321,
    "metrics by hour (24 h)": 556,
    "metrics by hour and model (24 h)": 574,
    "metrics by property (24 h)": 614,
    "metrics by user (24 h)": 1015,
    "search sorted by cost": 2832,
}

Query = tuple[str, str, str, dict[str, Any] | None]
"""(name, method, path, JSON body)."""


def queries(day_start_ms: int, end_ms: int) -> list[Query]:
    """What the pages ask of the API (the Overview's panels, the Requests page, a request)."""
    window = {"start": day_start_ms, "end": end_ms}
    three = {
        "and": [
            {"field": "model", "op": "eq", "value": "gpt-4o-mini"},
            {"field": "properties.env", "op": "eq", "value": "prod"},
            {"field": "latency_ms", "op": "gt", "value": 500},
        ]
    }
    return [
        ("latest 50 requests", "GET", "/v1/requests?limit=50", None),
        ("search, three clauses", "POST", "/v1/requests/search", {"filter": three, "limit": 50}),
        ("search sorted by cost", "POST", "/v1/requests/search", {"sort": "cost", "limit": 50}),
        ("metrics totals (24 h)", "POST", "/v1/metrics", window),
        ("metrics by hour (24 h)", "POST", "/v1/metrics", {**window, "bucket": "hour"}),
        (
            "metrics by hour and model (24 h)",
            "POST",
            "/v1/metrics",
            {**window, "bucket": "hour", "group_by": "model"},
        ),
        (
            "metrics by property (24 h)",
            "POST",
            "/v1/metrics",
            {**window, "group_by": "property:feature"},
        ),
        ("metrics by user (24 h)", "POST", "/v1/metrics", {**window, "group_by": "user"}),
        ("overview, all panels (24 h)", "POST", "/v1/metrics/overview", window),
        (
            "overview, all panels (7 d)",
            "POST",
            "/v1/metrics/overview",
            {"start": end_ms - 7 * DAY_MS, "end": end_ms},
        ),
        (
            "metrics by hour, filtered (7 d)",
            "POST",
            "/v1/metrics",
            {"start": end_ms - 7 * DAY_MS, "end": end_ms, "bucket": "hour", "filter": three},
        ),
    ]


PAGES: list[str] = []
"""Dashboard page URLs to time as well (added once the pages exist: ``/``, ``/requests`` ...)."""


def _llmtap(*args: str, data: Path) -> list[str]:
    return [sys.executable, "-m", "llmtap", "--data-dir", str(data), *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def seeded(
    rows: int, days: int, seed: int, log: Callable[[str], None]
) -> tuple[Path, dict[str, Any]]:
    """A data directory holding ``rows`` seeded calls, made once and reused."""
    data = WORK / "dashboard" / f"seed-{rows}-{days}d-s{seed}"
    marker = data / "seeded.json"
    if marker.exists():
        return data, json.loads(marker.read_text())
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    log(f"seeding {rows:,} rows into {data} (once; later runs reuse it)")
    began = time.monotonic()
    out = subprocess.run(
        _llmtap("seed", "--rows", str(rows), "--days", str(days), "--seed", str(seed), data=data),
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - began
    info = {
        "rows": rows,
        "days": days,
        "seed": seed,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        "disk_bytes": _du(data),
        "disk_by_store": {
            p.name: _du(p) if p.is_dir() else p.stat().st_size for p in data.iterdir()
        },
        "end_unix_ms": int(time.time() * 1000) // 60_000 * 60_000,
        "output": out.stdout.strip(),
    }
    marker.write_text(json.dumps(info, indent=2))
    return data, info


def _key(data: Path) -> str:
    out = subprocess.run(
        _llmtap("keys", "create", "--name", "bench-dashboard", data=data),
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return next(word for word in out.stdout.split() if word.startswith("sk-llmtap-"))


def _call(key: str, method: str, path: str, body: dict[str, Any] | None) -> tuple[float, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        payload = response.read()
    return (time.perf_counter() - began) * 1000.0, payload


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def run_dashboard(
    log: Callable[[str], None],
    logs: Path,
    rows: int = 1_000_000,
    days: int = 7,
    seed: int = 42,
    runs: int = 20,
    export_rows: int = 200_000,
) -> dict[str, Any]:
    data, info = seeded(rows, days, seed, log)
    key = _key(data)
    api_log = (logs / "dashboard-api.log").open("wb")
    api = subprocess.Popen(
        _llmtap("api", "--host", "127.0.0.1", "--port", str(PORT), data=data),
        env=_env(),
        stdout=api_log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600  # the first start migrates (indexes on 1M rows)
        while True:
            try:
                _call(key, "GET", "/v1/requests?limit=1", None)
                break
            except OSError:
                if api.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the API did not start; see dashboard-api.log") from None
                time.sleep(0.5)
        end = int(info["end_unix_ms"])
        results: dict[str, Any] = {}
        for name, method, path, body in [
            *queries(end - DAY_MS, end),
            *((page, "GET", page, None) for page in PAGES),
        ]:
            times = [_call(key, method, path, body)[0] for _ in range(max(3, runs))]
            results[name] = {
                "best_ms": round(min(times[:3]), 1),
                "p95_ms": round(_p95(times), 1),
                "before_ms": BEFORE_MS.get(name),
            }
            log(f"  {name}: best {results[name]['best_ms']} ms, p95 {results[name]['p95_ms']} ms")
        row = json.loads(_call(key, "GET", "/v1/requests?limit=1", None)[1])["data"][0]
        first = row.get("request_id") or row["id"]
        times = [
            _call(key, "GET", f"/v1/requests/{first}?bodies=true", None)[0] for _ in range(runs)
        ]
        results["request view (with bodies)"] = {
            "best_ms": round(min(times[:3]), 1),
            "p95_ms": round(_p95(times), 1),
            "before_ms": None,
        }
        export = _export(key, export_rows)
        log(f"  export: {export['rows_per_s']:,} rows/s")
        return {
            "seed": info,
            "queries": results,
            "export": export,
            "api_rss_mb": round(_rss_kb(api.pid) / 1024),
            "api_peak_rss_mb": round(_rss_kb(api.pid, "VmHWM") / 1024),
        }
    finally:
        api.terminate()
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            api.kill()
        api_log.close()


def _export(key: str, limit: int) -> dict[str, Any]:
    """Every row newest first, 1000 a page, by cursor: what an export streams."""
    cursor: str | None = None
    done = 0
    began = time.perf_counter()
    while done < limit:
        body: dict[str, Any] = {"limit": 1000}
        if cursor:
            body["cursor"] = cursor
        page = json.loads(_call(key, "POST", "/v1/requests/search", body)[1])
        done += len(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    seconds = time.perf_counter() - began
    return {"rows": done, "seconds": round(seconds, 2), "rows_per_s": round(done / seconds)}


START_MARK = "<!-- dashboard:start -->"
END_MARK = "<!-- dashboard:end -->"
TARGETS = {
    "overview, all panels (24 h)": 500,
    "overview, all panels (7 d)": 500,
    "search, three clauses": 300,
    "request view (with bodies)": 100,
}


def render_section(result: dict[str, Any], machine: dict[str, Any], date: str) -> str:
    seed = result["seed"]
    lines = [
        START_MARK,
        f"## Dashboard at {seed['rows']:,} rows",
        "",
        f"{date}; machine: {json.dumps(machine)}. `benchmarks/run --only dashboard`"
        " (bench/dashboard.py): the embedded stores (SQLite, chDB, bodies on disk) seeded by"
        f" `llmtap seed --rows {seed['rows']} --days {seed['days']}` (5 models, 5,000 users,"
        " sessions, two properties), served by `llmtap api` on loopback; one query at a time,"
        " client time on loopback (server time + well under 1 ms of HTTP). Before: the numbers"
        " in issue 12, same data shape.",
        "",
        f"Seeding: {seed['seconds']:,.0f} s ({seed['rows_per_s']:,} rows/s, bodies included),"
        f" {seed['disk_bytes'] / 1e9:.2f} GB on disk"
        f" ({', '.join(f'{k} {v / 1e6:,.0f} MB' for k, v in sorted(seed['disk_by_store'].items()))}).",
        "",
        "| query | before (ms) | best of 3 (ms) | p95 of 20 (ms) | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, q in result["queries"].items():
        before = "" if q["before_ms"] is None else f"{q['before_ms']:,}"
        target = TARGETS.get(name, 300)
        met = "met" if q["p95_ms"] <= target else "**missed**"
        lines.append(
            f"| {name} | {before} | {q['best_ms']:,} | {q['p95_ms']:,} | ≤ {target} ms: {met} |"
        )
    export = result["export"]
    lines += [
        "",
        f"Export (search API, 1000 rows a page by cursor): {export['rows']:,} rows in"
        f" {export['seconds']} s = **{export['rows_per_s']:,} rows/s** (target ≥ 50,000)."
        f" API RSS after the run: {result['api_rss_mb']} MB (peak {result['api_peak_rss_mb']} MB;"
        " target ≤ 500 MB).",
        END_MARK,
    ]
    return "\n".join(lines) + "\n"


def update_results(path: Path, section: str) -> None:
    """Put ``section`` in place of the previous one in RESULTS.md (or at its end)."""
    text = path.read_text() if path.exists() else ""
    if START_MARK in text and END_MARK in text:
        head, _, rest = text.partition(START_MARK)
        _, _, tail = rest.partition(END_MARK)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def kept_section(path: Path) -> str:
    """The dashboard section RESULTS.md holds now ('' if none): a full report keeps it."""
    text = path.read_text() if path.exists() else ""
    if START_MARK not in text:
        return ""
    return START_MARK + text.partition(START_MARK)[2].partition(END_MARK)[0] + END_MARK + "\n"
