"""The dashboard's queries at a million rows: seed once, then time each call the pages make.

``llmtap seed`` fills a data directory under ``.work/dashboard/`` (kept: the next run reuses it;
its ``seeded.json`` says how long seeding took and how big it is). ``llmtap api`` then serves
it on loopback, and each query in ``queries`` and each dashboard page in ``pages`` (signed in
through the real ``/login`` form) is run one at a time: best of 3, then p95 over ``runs``.
Times are the client's on loopback: the server's time plus a fraction of a millisecond of HTTP.
The exports (``/export.csv``, ``/export.jsonl``) are streamed whole; each page's JS+CSS is
gzipped and summed, its requests counted, and its largest contentful paint taken in chromium
when Playwright is installed. The API's RSS is read from /proc while it serves.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from functools import partial
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from bench import sections
from bench.sections import update_section
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


def pages(sample: dict[str, Any]) -> list[tuple[str, str]]:
    """The dashboard pages timed (name, URL), signed in by cookie; ``sample`` is a logged call
    (its id, session, user) from the API."""
    three = json.dumps(
        {
            "and": [
                {"field": "model", "op": "eq", "value": "gpt-4o-mini"},
                {"field": "properties.env", "op": "eq", "value": "prod"},
                {"field": "latency_ms", "op": "gt", "value": 500},
            ]
        },
        separators=(",", ":"),
    )
    quote = urllib.parse.quote
    return [
        ("page: Overview (24 h)", "/?range=24h"),
        ("page: Overview (7 d)", "/?range=7d"),
        (
            "page: Requests, three clauses incl. a property (7 d)",
            f"/requests?range=7d&f={quote(three)}",
        ),
        ("page: request view", f"/requests/{quote(sample['request_id'], safe='')}"),
        ("page: Sessions (24 h)", "/sessions?range=24h"),
        ("page: session view", f"/sessions/{quote(sample['session_id'], safe='')}"),
        ("page: Users (24 h)", "/users?range=24h"),
        ("page: user view (24 h)", f"/users/{quote(sample['user_id'], safe='')}?range=24h"),
        ("page: Properties, feature (24 h)", "/properties/feature?range=24h"),
    ]


EXPORTS = [
    ("export CSV (7 d)", "/export.csv?range=7d"),
    ("export JSONL (7 d)", "/export.jsonl?range=7d"),
]
"""Streamed whole (every call of the last 7 days: ~1M rows), once each."""


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


def sign_in(key: str) -> tuple[str, str]:
    """The session cookie from the real ``/login`` form, and the CSRF token its pages carry."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    try:
        conn.request(
            "POST",
            "/login",
            urllib.parse.urlencode({"key": key, "next": "/keys"}),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": f"http://127.0.0.1:{PORT}",
            },
        )
        response = conn.getresponse()
        response.read()
        if response.status != 303:
            raise RuntimeError(f"sign-in answered {response.status}, not 303")
        cookie = SimpleCookie(response.getheader("Set-Cookie") or "")["llmtap_session"].value
    finally:
        conn.close()
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', _page(cookie, "/keys")[1])
    if not found:
        raise RuntimeError("no CSRF token on the signed-in page")
    return cookie, found.group(1)


def _status(key: str, method: str, path: str, body: dict[str, Any] | None) -> float:
    return _call(key, method, path, body)[0]


def _page_status(cookie: str, path: str) -> float:
    return _page(cookie, path)[0]


def _page(cookie: str, path: str) -> tuple[float, str]:
    """Time to the last byte of a signed-in page (refused if it sends us to /login)."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    try:
        began = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": f"llmtap_session={cookie}"})
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - began) * 1000.0
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status}")
    return elapsed, body.decode()


_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"")
_LINK = re.compile(r"<link\b[^>]*>")


def weight(cookie: str, html: str) -> dict[str, int]:
    """JS+CSS bytes a page loads, gzip-compressed (level 6), and the requests to render it
    (the HTML, each ``<script src>`` and each ``<link rel=stylesheet>``)."""
    assets = _SCRIPT.findall(html)
    for tag in _LINK.findall(html):
        href = re.search(r'\bhref="([^"]+)"', tag)
        if re.search(r'\brel="stylesheet"', tag) and href:
            assets.append(href.group(1))
    compressed = 0
    for url in assets:
        with urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{PORT}{url}", headers={"Cookie": f"llmtap_session={cookie}"}
            ),
            timeout=60,
        ) as response:
            compressed += len(gzip.compress(response.read(), 6))
    return {"js_css_gzip_bytes": compressed, "requests": 1 + len(assets)}


def _stream(cookie: str, path: str) -> dict[str, Any]:
    """A whole export: rows (lines, less a CSV header) per second to the last byte."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=600)
    lines = 0
    size = 0
    try:
        began = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": f"llmtap_session={cookie}"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status}")
        while chunk := response.read(1 << 20):
            lines += chunk.count(b"\n")
            size += len(chunk)
        seconds = time.perf_counter() - began
    finally:
        conn.close()
    rows = lines - 1 if path.startswith("/export.csv") else lines
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "mb": round(size / 1e6),
    }


LCP_SCRIPT = """() => new Promise((resolve) => {
  new PerformanceObserver((list) => {
    const entries = list.getEntries();
    resolve(entries[entries.length - 1].startTime);
  }).observe({type: 'largest-contentful-paint', buffered: true});
  setTimeout(() => resolve(null), 3000);
})"""


def lcp(cookie: str, named: list[tuple[str, str]], runs: int = 3) -> dict[str, Any]:
    """Largest contentful paint per page in Debian's chromium (Playwright), best of ``runs``
    loads; every request off 127.0.0.1 is aborted. A string says why it was not measured."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    executable = shutil.which("chromium")
    if executable is None:
        return {"skipped": "no chromium on PATH"}
    out: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context()
            context.add_cookies(
                [
                    {
                        "name": "llmtap_session",
                        "value": cookie,
                        "domain": "127.0.0.1",
                        "path": "/",
                        "httpOnly": True,
                        "sameSite": "Strict",
                    }
                ]
            )
            context.route(
                re.compile(r"^(?!http://127\.0\.0\.1[:/]).*"), lambda route: route.abort()
            )
            page = context.new_page()
            for name, path in named:
                seen: list[float] = []
                for _ in range(runs):
                    page.goto(f"http://127.0.0.1:{PORT}{path}", wait_until="load")
                    value = page.evaluate(LCP_SCRIPT)
                    if value is not None:
                        seen.append(float(value))
                out[name] = {
                    "best_ms": round(min(seen), 1) if seen else None,
                    "worst_ms": round(max(seen), 1) if seen else None,
                }
        except PlaywrightError as exc:
            return {"skipped": f"chromium failed: {str(exc)[:200]}"}
        finally:
            browser.close()
    return out


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
    # a seed made by an older llmtap gets the schema's newer revisions (the API does not migrate)
    subprocess.run(_llmtap("migrate", data=data), env=_env(), check=True, capture_output=True)
    key = _key(data)
    api_log = (logs / "dashboard-api.log").open("wb")
    # the runner is pinned to core 0 (benchmarks/run); the API gets both cores, as it would on
    # a 2-core machine of its own (it used to inherit core 0 alone, shared with the client)
    api = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0,1",
            *_llmtap("api", "--host", "127.0.0.1", "--port", str(PORT), data=data),
        ],
        env=_env(),
        stdout=api_log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                _call(key, "GET", "/v1/requests?limit=1", None)
                break
            except OSError:
                if api.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the API did not start; see dashboard-api.log") from None
                time.sleep(0.5)
        rss_at_start = _rss_kb(api.pid)
        end = int(info["end_unix_ms"])
        results: dict[str, Any] = {}

        def timed(name: str, once: Callable[[], float], count: int) -> None:
            times = [once() for _ in range(max(3, count))]
            results[name] = {
                "best_ms": round(min(times[:3]), 1),
                "p95_ms": round(_p95(times), 1),
                "before_ms": BEFORE_MS.get(name),
                "rss_after_mb": round(_rss_kb(api.pid) / 1024),
            }
            log(
                f"  {name}: best {results[name]['best_ms']} ms, p95 {results[name]['p95_ms']} ms,"
                f" RSS {results[name]['rss_after_mb']} MB"
            )

        for name, method, path, body in queries(end - DAY_MS, end):
            timed(name, partial(_status, key, method, path, body), runs)
        found = json.loads(
            _call(
                key,
                "POST",
                "/v1/requests/search",
                {
                    "limit": 1,
                    "filter": {
                        "and": [
                            {"field": "session_id", "op": "exists", "value": True},
                            {"field": "user_id", "op": "exists", "value": True},
                        ]
                    },
                },
            )[1]
        )["data"][0]
        first = found.get("request_id") or found["id"]
        timed(
            "request view (with bodies)",
            lambda: _call(key, "GET", f"/v1/requests/{first}?bodies=true", None)[0],
            runs,
        )
        cookie, _csrf = sign_in(key)
        named = pages(found)
        weights: dict[str, Any] = {}
        for name, path in named:
            timed(name, partial(_page_status, cookie, path), runs)
            weights[name] = weight(cookie, _page(cookie, path)[1])
        exports: dict[str, Any] = {}
        for name, path in EXPORTS:
            exports[name] = _stream(cookie, path)
            log(f"  {name}: {exports[name]['rows_per_s']:,} rows/s")
        exports["search API, 1000 a page"] = _export(key, export_rows)
        log(f"  search API paging: {exports['search API, 1000 a page']['rows_per_s']:,} rows/s")
        rss_after_serving = _rss_kb(api.pid)
        peak = _rss_kb(api.pid, "VmHWM")
        log("  LCP in chromium ...")
        try:
            paints = lcp(cookie, named)
        except (OSError, RuntimeError) as exc:  # the browser must not lose the server numbers
            paints = {"skipped": f"{type(exc).__name__}: {str(exc)[:200]}"}
        return {
            "seed": info,
            "queries": results,
            "weights": weights,
            "lcp": paints,
            "export": exports,
            "load_avg": os.getloadavg(),
            "api_rss_start_mb": round(rss_at_start / 1024),
            "api_rss_mb": round(rss_after_serving / 1024),
            "api_peak_rss_mb": round(peak / 1024),
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
    "page: request view": 100,
}
PREVIOUS = {
    # best of 3 / p95 of 20 (ms) at the first dashboard measurement (commit 943fbf0, API pinned
    # to one core shared with the client, load ~4)
    "latest 50 requests": (3.4, 4.4),
    "search, three clauses": (4.0, 7.5),
    "search sorted by cost": (3.1, 4.7),
    "metrics totals (24 h)": (41.9, 106.4),
    "metrics by hour (24 h)": (44.4, 49.4),
    "metrics by hour and model (24 h)": (42.3, 46.2),
    "metrics by property (24 h)": (37.5, 50.5),
    "metrics by user (24 h)": (196.7, 235.7),
    "overview, all panels (24 h)": (111.4, 889.6),
    "overview, all panels (7 d)": (2266.7, 2872.7),
    "metrics by hour, filtered (7 d)": (266.1, 321.8),
    "request view (with bodies)": (1.3, 3.7),
}


def render_section(result: dict[str, Any], machine: dict[str, Any], date: str) -> str:
    seed = result["seed"]
    load = ", ".join(f"{x:.2f}" for x in result["load_avg"])
    lines = [
        START_MARK,
        f"## Dashboard at {seed['rows']:,} rows",
        "",
        f"{date}; machine: {json.dumps(machine)}; load average at the end of the run: {load}"
        " (2 cores shared with other work: times vary 2-3x from run to run)."
        " `benchmarks/run --only dashboard`"
        " (bench/dashboard.py): the embedded stores (SQLite, chDB, bodies on disk) seeded by"
        f" `llmtap seed --rows {seed['rows']} --days {seed['days']}` (5 models, 5,000 users,"
        " sessions, two properties), served by `llmtap api` on loopback (both cores); one"
        " request at a time; API queries are client time on loopback (server time + well under"
        " 1 ms of HTTP), pages are time to the last byte, signed in through the real `/login`"
        " form. Before: the numbers in issue 12, same data shape; previous: the first"
        " measurement of this section (commit 943fbf0, best / p95).",
        "",
        f"Seeding: {seed['seconds']:,.0f} s ({seed['rows_per_s']:,} rows/s, bodies included),"
        f" {seed['disk_bytes'] / 1e9:.2f} GB on disk"
        f" ({', '.join(f'{k} {v / 1e6:,.0f} MB' for k, v in sorted(seed['disk_by_store'].items()))}).",
        "",
        "| query or page | before (ms) | previous best / p95 (ms) | best of 3 (ms) | p95 of 20 (ms)"
        " | target | API RSS after (MB) |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, q in result["queries"].items():
        before = "" if q["before_ms"] is None else f"{q['before_ms']:,}"
        previous = PREVIOUS.get(name)
        prev = "" if previous is None else f"{previous[0]:,} / {previous[1]:,}"
        target = TARGETS.get(name, 300)
        met = "met" if q["p95_ms"] <= target else "**missed**"
        lines.append(
            f"| {name} | {before} | {prev} | {q['best_ms']:,} | {q['p95_ms']:,} |"
            f" ≤ {target} ms: {met} | {q['rss_after_mb']} |"
        )
    lines += [
        "",
        "Page weight (JS+CSS served, gzip level 6, summed; requests = the HTML + each script"
        " and stylesheet) and largest contentful paint in Debian's chromium (Playwright,"
        " headless, signed in, requests off 127.0.0.1 aborted; best and worst of 3 loads):",
        "",
        "| page | JS+CSS gzip (KB) | requests | LCP best / worst (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    paints = result.get("lcp", {})
    for name, w in result.get("weights", {}).items():
        paint = paints.get(name) if isinstance(paints.get(name), dict) else None
        shown = (
            f"{paint['best_ms']} / {paint['worst_ms']}"
            if paint and paint["best_ms"] is not None
            else "n/a"
        )
        lines.append(
            f"| {name.removeprefix('page: ')} | {w['js_css_gzip_bytes'] / 1024:.1f} |"
            f" {w['requests']} | {shown} |"
        )
    if "skipped" in paints:
        lines += ["", f"LCP not measured: {paints['skipped']}."]
    lines += ["", "Export over HTTP, signed in, every call of the last 7 days, streamed whole:", ""]
    for name, e in result["export"].items():
        lines.append(
            f"* {name}: {e['rows']:,} rows in {e['seconds']} s = **{e['rows_per_s']:,} rows/s**"
            + (f" ({e['mb']:,} MB)" if "mb" in e else "")
        )
    lines += [
        "",
        "Target ≥ 50,000 rows/s. API RSS: "
        f"{result['api_rss_start_mb']} MB when started, {result['api_rss_mb']} MB after"
        f" serving all of the above, peak {result['api_peak_rss_mb']} MB (target ≤ 500 MB)."
        " What changed, what each option measured and where the time goes:"
        " docs/decisions/2026-12-01-dashboard-queries.md.",
        END_MARK,
    ]
    return "\n".join(lines) + "\n"


def update_results(path: Path, section: str) -> None:
    """Put the dashboard ``section`` in place of the previous one in RESULTS.md (or at its end)."""
    update_section(path, section, START_MARK, END_MARK)


def kept_section(path: Path) -> str:
    """The dashboard section RESULTS.md holds now ('' if none): a full report keeps it."""
    return sections.kept_section(path, START_MARK, END_MARK)
