"""RESULTS.md from a results JSON: the machine, the tables side by side, the targets, profiles."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.figures import dig as _get
from bench.gateway_cache import cache_section
from bench.scorecard import scorecard_section

CS = ("1", "16", "64")
NAMES = {
    "direct": "direct (no proxy)",
    "nginx": "nginx",
    "llmtap": "llmtap serve (logging on)",
    "llmtap-proxy": "llmtap proxy only",
    "llmtap-proxy-base": "llmtap proxy only, baseline checkout",
    "llmtap-base": "llmtap serve, baseline checkout",
    "litellm": "LiteLLM",
    "portkey": "Portkey",
    "nginx-tls": "nginx, upstream over TLS",
    "llmtap-tls": "llmtap serve, upstream over TLS",
    "llmtap-proxy-tls": "llmtap proxy only, upstream over TLS",
}


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def machine_section(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    v = m["versions"]
    lines = [
        f"Measured {m['date_utc']} with `benchmarks/run{' --quick' if r['mode'] == 'quick' else ''}`"
        f" ({r['mode']} set, {r['duration_s_per_run']:.0f} s per load run, "
        f"whole run {r.get('runtime_s', 0) / 60:.1f} min).",
        "",
        "| machine | |",
        "| --- | --- |",
        f"| CPUs (`nproc`) | {m['nproc']} |",
        f"| CPU model | {m['cpu_model']} |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| kernel | {m['kernel']} |",
        f"| load average at start / end | {r.get('loadavg_start', '?')} / {r.get('loadavg_end', '?')} |",
        "",
        "| software | version |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {val} |" for k, val in v.items()]
    pinned = bool(_get(r, "layout", "pinned") is not False)
    lines += [
        "",
        (
            "Layout: the gateway under test is pinned to core 1 (`taskset -c 1`, all its processes:"
            " `llmtap serve` = supervisor + proxy + backend/consumer); the mock upstream, the load"
            " generator (wrk, or the asyncio stream client) and the runner share core 0."
            if pinned
            else "Layout: nothing pinned (`LLMTAP_BENCH_LAYOUT=unpinned`): the gateway, the mock"
            " upstream, the load generator and the runner all share both cores."
        )
        + " Every server listens on 127.0.0.1. The machine is shared with other work, so the"
        " load average is shown: read small differences with care.",
        "",
    ]
    return lines


def unpinned_section(r: dict[str, Any]) -> list[str]:
    """The same overhead loads with nothing pinned, from a run of their own (bench.merge)."""
    u = r.get("unpinned")
    if not u:
        return []
    o, added = u["overhead"], u["added_latency_ms"]
    load = u.get("loadavg") or ["?", "?"]
    lines = [
        "### Unpinned layout: nothing pinned, everything on both cores",
        "",
        f"Its own run (`LLMTAP_BENCH_LAYOUT=unpinned`, `{_get(r, 'merged_from', 'unpinned')}`;"
        f" load average {load[0]} at start, {load[1]} at the end). Ratios are to nginx in that"
        " run.",
        "",
        "| target | c | req/s | vs nginx | p50 | p99 | added p50 | added p99 | CPU us/call |"
        " stream added TTFT p50 | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in CS:
        ng = _get(o, "nginx", "json", c, "rps")
        for name, res in o.items():
            j = _get(res, "json", c)
            if name == "direct" or j is None:
                continue
            add = _get(added, name, "json", c) or {}
            ttft = _get(added, name, "stream", c, "ttft") or {}
            lat = j["latency_us"]
            lines.append(
                f"| {NAMES.get(name, name)} | {c} | {_f(j['rps'], 0)}"
                f" | {_f(j['rps'] / ng if ng else None, 2)}"
                f" | {_f(lat['50'] / 1000, 3)} | {_f(lat['99'] / 1000, 3)}"
                f" | {_f(add.get('50'), 3)} | {_f(add.get('99'), 3)}"
                f" | {_f(j.get('gateway_cpu_us_per_call'), 0)} | {_f(ttft.get('50'), 3)}"
                f" | {j['errors_total']} |"
            )
    return [*lines, ""]


def overhead_section(r: dict[str, Any]) -> list[str]:
    o = r.get("overhead")
    if not o:
        return []
    added = r.get("added_latency_ms", {})
    lines = ["## Proxy overhead", ""]
    failed = {n: res["error"] for n, res in o.items() if "error" in res}
    for name, err in failed.items():
        lines.append(f"**{name} failed to run:** `{err.splitlines()[0][:300]}`")
        lines.append("")
    names = [n for n in o if n not in failed]
    lines += [
        "### Non-streamed calls (wrk, keep-alive, closed loop)",
        "",
        "Latency and added latency (gateway minus direct, same percentile) in ms.",
        "",
        "| target | c | req/s | p50 | p95 | p99 | added p50 | added p95 | added p99 |"
        " gateway CPU | CPU us/call | gateway RSS | wrk CPU | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        " ---: |",
    ]
    for c in CS:
        for name in names:
            res = _get(o, name, "json", c)
            if res is None:
                continue
            lat = res["latency_us"]
            add = _get(added, name, "json", c) or {}
            lines.append(
                f"| {NAMES.get(name, name)} | {c} | {_f(res['rps'], 0)} | {_f(lat['50'] / 1000, 3)}"
                f" | {_f(lat['95'] / 1000, 3)} | {_f(lat['99'] / 1000, 3)}"
                f" | {_f(add.get('50'), 3)} | {_f(add.get('95'), 3)} | {_f(add.get('99'), 3)}"
                f" | {_f(res.get('gateway_cpu_percent'), 0)}%"
                f" | {_f(res.get('gateway_cpu_us_per_call'), 0)}"
                f" | {_f(res.get('gateway_peak_rss_mb'), 0)} MB | {_f(res['cpu_percent'], 0)}%"
                f" | {res['errors_total']} |"
            )
    lines += [
        "",
        "### Streamed calls (asyncio stream client; 8 content chunks per answer)",
        "",
        "TTFT = request sent to first content delta received. Added = gateway minus direct (ms).",
        "",
        "| target | c | req/s | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p95 |"
        " added TTFT p99 | added total p50 | added total p99 | gateway CPU | gateway RSS |"
        " client CPU | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        " ---: | ---: |",
    ]
    for c in CS:
        for name in names:
            res = _get(o, name, "stream", c)
            if res is None:
                continue
            add = _get(added, name, "stream", c) or {}
            ttft = add.get("ttft", {})
            total = add.get("total", {})
            lines.append(
                f"| {NAMES.get(name, name)} | {c} | {_f(res['rps'], 0)}"
                f" | {_f(res['ttft_ms'].get('50'), 3)} | {_f(res['ttft_ms'].get('99'), 3)}"
                f" | {_f(ttft.get('50'), 3)} | {_f(ttft.get('95'), 3)} | {_f(ttft.get('99'), 3)}"
                f" | {_f(total.get('50'), 3)} | {_f(total.get('99'), 3)}"
                f" | {_f(res.get('gateway_cpu_percent'), 0)}%"
                f" | {_f(res.get('gateway_peak_rss_mb'), 0)} MB | {_f(res['cpu_percent'], 0)}%"
                f" | {res['errors_total']} |"
            )
    lines += ["", *ratio_section(o, names), "", *shipper_section(o)]
    return lines


def shipper_section(o: dict[str, Any]) -> list[str]:
    """Did logging keep up? llmtap's own counters, read after each run (cumulative)."""
    lines = [
        "### Did llmtap's logging keep up? (`/_llmtap/metrics` after each run, cumulative)",
        "",
        "| target | mode | c | calls answered | records published | shipper backlog |"
        " records dropped |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    found = False
    for name in ("llmtap", "llmtap-proxy"):
        for mode in ("json", "stream"):
            for c in CS:
                m = _get(o, name, mode, c, "llmtap_metrics")
                if not m:
                    continue
                found = True
                lines.append(
                    f"| {NAMES[name]} | {mode} | {c} | {m.get('requests_total', 0):,.0f}"
                    f" | {m.get('records_published_total', 0):,.0f}"
                    f" | {m.get('shipper_backlog', 0):,.0f} | {m.get('records_dropped_total', 0):,.0f} |"
                )
    return [*lines, ""] if found else []


def ratio_section(o: dict[str, Any], names: list[str]) -> list[str]:
    def rps(name: str, mode: str) -> float | None:
        value = _get(o, name, mode, "64", "rps")
        return float(value) if value is not None else None

    lines = [
        "### Side by side: max sustained requests/s per proxy process (c=64)",
        "",
        "| target | non-streamed req/s | vs nginx | vs LiteLLM | streamed req/s | vs nginx |"
        " vs LiteLLM |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        cells = [NAMES.get(name, name)]
        for mode in ("json", "stream"):
            mine, ng, ll = rps(name, mode), rps("nginx", mode), rps("litellm", mode)
            cells.append(_f(mine, 0))
            cells.append(f"{mine / ng:.2f}x" if mine and ng else "-")
            cells.append(f"{mine / ll:.1f}x" if mine and ll else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets_section(r: dict[str, Any]) -> list[str]:
    add = r.get("added_latency_ms", {})
    o = r.get("overhead", {})
    rows: list[tuple[str, str, str, bool | None]] = []

    def row(what: str, goal: str, value: float | None, ok: bool | None, unit: str = "") -> None:
        shown = "-" if value is None else f"{value:,.3f}{unit}".rstrip("0").rstrip(".") + ""
        rows.append((what, goal, shown, ok))

    for name, label in (("llmtap", "serve"), ("llmtap-proxy", "proxy only")):
        if name not in o:
            continue
        a1 = _get(add, name, "json", "1") or {}
        row(
            f"{label}: added latency, non-streamed, c=1, p50",
            "≤ 0.15 ms",
            a1.get("50"),
            None if a1.get("50") is None else a1["50"] <= 0.15,
            " ms",
        )
        row(
            f"{label}: added latency, non-streamed, c=1, p99",
            "≤ 0.5 ms",
            a1.get("99"),
            None if a1.get("99") is None else a1["99"] <= 0.5,
            " ms",
        )
        a64 = _get(add, name, "json", "64") or {}
        row(
            f"{label}: added latency, non-streamed, c=64, p99",
            "≤ 5 ms",
            a64.get("99"),
            None if a64.get("99") is None else a64["99"] <= 5,
            " ms",
        )
        mine = _get(o, name, "json", "64", "rps")
        ng = _get(o, "nginx", "json", "64", "rps")
        ll = _get(o, "litellm", "json", "64", "rps")
        if mine and ng:
            row(f"{label}: req/s at c=64 vs nginx", "≥ 0.5x", mine / ng, mine / ng >= 0.5, "x")
        if mine and ll:
            row(f"{label}: req/s at c=64 vs LiteLLM", "≥ 50x", mine / ll, mine / ll >= 50, "x")
        t1 = _get(add, name, "stream", "1", "ttft") or {}
        row(
            f"{label}: added TTFT, streams, c=1, p50",
            "≤ 0.2 ms",
            t1.get("50"),
            None if t1.get("50") is None else t1["50"] <= 0.2,
            " ms",
        )
    emb = _get(r, "pipeline_embedded", "records_per_s")
    row(
        "consumer into embedded stores",
        "≥ 20,000 records/s",
        emb,
        None if emb is None else emb >= 20000,
        "/s",
    )
    dist = _get(r, "pipeline_distributed", "records_per_s")
    if dist is not None:
        row("consumer Kafka → Postgres + S3", "(no target)", dist, None, "/s")
    fr = _get(r, "freshness", "freshness_ms", "99")
    row("freshness p99 at 500 req/s", "≤ 2000 ms", fr, None if fr is None else fr <= 2000, " ms")
    flat = _get(r, "soak", "flat")
    growth = _get(r, "soak", "growth_after_warmup")
    if flat is not None:
        row(
            "proxy RSS over 10 min (growth after warm-up)",
            "flat (< 10%)",
            None if growth is None else 100 * growth,
            bool(flat),
            " %",
        )
    lines = [
        "## Targets (logging on: `serve` = everything on the gateway core, `proxy only` ="
        " the hot path with the consumer elsewhere)",
        "",
        "| target | goal | measured | met |",
        "| --- | --- | ---: | :---: |",
    ]
    for what, goal, shown, ok in rows:
        mark = "-" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {what} | {goal} | {shown} | {mark} |")
    return [*lines, ""]


def profile_table(title: str, prof: dict[str, Any] | None, top: int = 12) -> list[str]:
    if not prof or not prof.get("samples"):
        return []
    lines = [
        f"**{title}** ({prof['samples']} samples; % of samples)",
        "",
        "| self | function |",
        "| ---: | --- |",
    ]
    lines += [f"| {pct}% | `{fn}` |" for pct, fn in prof["self"][:top]]
    lines += ["", "| inclusive | function |", "| ---: | --- |"]
    lines += [f"| {pct}% | `{fn}` |" for pct, fn in prof["inclusive"][: top + 6]]
    return [*lines, ""]


def profile_tables(prof: dict[str, Any], layout: str) -> list[str]:
    """One table per profiled run: ``name`` (wrk, non-streamed) or ``name streamed``."""
    lines: list[str] = []
    for key, p in prof.items():
        name, _, kind = key.partition(" ")
        what = "streamed (the stream client)" if kind else "non-streamed"
        lines += profile_table(f"py-spy on the {name} proxy process at c=64, {what}{layout}", p)
    return lines


def tls_section(r: dict[str, Any]) -> list[str]:
    """The "through TLS" rows: each gateway with the mock over TLS, next to its plain row."""
    t = r.get("tls")
    if not t:
        return []
    o, added = t["overhead"], t["added_latency_ms"]
    plain, plain_added = r.get("overhead", {}), r.get("added_latency_ms", {})
    lines = [
        "## Through TLS",
        "",
        "The same loads with the mock upstream served over TLS (a bench CA each gateway trusts;"
        " nginx with `proxy_ssl_session_reuse on`, SNI and verification). Clients speak plain"
        " HTTP to the gateway; added = gateway minus direct plain HTTP to the mock (ms), so the"
        " difference to the plain row is the gateway's TLS to the provider.",
        "",
        "| target | c | req/s | added p50 | added p99 | plain req/s | plain added p50 |"
        " stream req/s | added TTFT p50 | gateway CPU us/call | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in CS:
        for name, res in o.items():
            if name == "direct" or "error" in res:
                continue
            base = name.removesuffix("-tls")
            j, s = _get(res, "json", c), _get(res, "stream", c)
            if j is None:
                continue
            add = _get(added, name, "json", c) or {}
            ttft = _get(added, name, "stream", c, "ttft") or {}
            pj = _get(plain, base, "json", c) or {}
            padd = _get(plain_added, base, "json", c) or {}
            lines.append(
                f"| {NAMES.get(name, name)} | {c} | {_f(j['rps'], 0)} | {_f(add.get('50'), 3)}"
                f" | {_f(add.get('99'), 3)} | {_f(pj.get('rps'), 0)} | {_f(padd.get('50'), 3)}"
                f" | {_f(s['rps'] if s else None, 0)} | {_f(ttft.get('50'), 3)}"
                f" | {_f(j.get('gateway_cpu_us_per_call'), 0)}"
                f" | {j['errors_total'] + (s['errors_total'] if s else 0)} |"
            )
    failed = [n for n, res in o.items() if "error" in res]
    lines += [*(f"**{n} failed to run:** `{o[n]['error'][:300]}`" for n in failed), ""]
    return lines


def passthrough_section(r: dict[str, Any]) -> list[str]:
    p = r.get("passthrough")
    if not p:
        return []
    lines = [
        "### Do chunks leave the gateway as they arrive?",
        "",
        "The mock waits 20 ms before each of 5 content deltas (c=1). Unbuffered: TTFT ~20 ms,"
        " total ~100 ms; a buffering gateway would show TTFT ~ total.",
        "",
        "| target | TTFT p50 (ms) | total p50 (ms) |",
        "| --- | ---: | ---: |",
    ]
    for name, res in p.items():
        if "error" in res:
            lines.append(f"| {NAMES.get(name, name)} | failed | |")
            continue
        lines.append(
            f"| {NAMES.get(name, name)} | {_f(res['ttft_p50_ms'], 2)} | {_f(res['total_p50_ms'], 2)} |"
        )
    return [*lines, ""]


def pipeline_section(r: dict[str, Any]) -> list[str]:
    lines = ["## Pipeline", ""]
    for key, title in (
        ("pipeline_embedded", "Consumer into the embedded stores"),
        ("pipeline_distributed", "Consumer from Kafka into Postgres + S3 (SeaweedFS)"),
    ):
        p = r.get(key)
        if p is None:
            continue
        if "error" in p:
            lines += [f"**{title}: failed** `{p['error'].splitlines()[0][:300]}`", ""]
            continue
        lines += [
            f"**{title}**: {p['records_per_s']:,.0f} records/s — {p['processed']:,} records "
            f"in {p['seconds']:.1f} s, {p['batches']} batches, {p['dead_lettered']} dead-lettered "
            f"(one consumer process pinned to core 1; queue filled beforehand through the real "
            f"proxy, half plain calls, half streams; {p['stores']}).",
            "",
        ]
        fill = p.get("fill")
        if fill:
            lines += [
                f"Filling it, one `llmtap proxy` process answered {fill['answered']:,} calls in "
                f"{fill['load_s']:.0f} s ({fill['answered_per_s']:,.0f}/s) but its shipper needed "
                f"{fill['shipped_s']:.0f} s to publish them: **{fill['shipped_per_s']:,.0f} records/s "
                f"shipped** (bodies written + record published; {fill['spooled']:,} spooled, "
                f"{fill['dropped']:,} dropped, {fill['backlog_left']:,} left in the backlog).",
                "",
            ]
        two = p.get("two_consumers")
        if two:
            lines += [
                f"**Two consumers of one group** on the same topic (a new group, a fresh database,"
                f" both unpinned): {two['records_per_s']:,.0f} records/s together"
                f" ({two['records_per_s'] / p['records_per_s']:.2f}x one) — {two['processed']:,}"
                f" records in {two['seconds']:.1f} s from the first start to the last record,"
                f" {two['records_per_cpu_s']:,.0f} records per consumer CPU-second; each: "
                + ", ".join(f"{m['processed']:,} in {m['seconds']:.1f} s" for m in two["each"])
                + ".",
                "",
            ]
        lines += profile_table(f"py-spy profile of that consumer ({key})", p.get("profile"))
    f = r.get("freshness")
    if f is not None and "error" not in f:
        fm = f.get("freshness_ms", {})
        lines += [
            f"**Freshness** (response fully read by the client → row visible in the records "
            f"store, the table the query API reads), `llmtap serve` at {f['rate']:.0f} req/s "
            f"open loop for {f['sent'] / f['rate']:.0f} s: p50 {_f(fm.get('50'), 0)} ms, "
            f"p90 {_f(fm.get('90'), 0)} ms, p99 {_f(fm.get('99'), 0)} ms, max-ish (p99.9) "
            f"{_f(fm.get('99.9'), 0)} ms; {f['answered']:,}/{f['sent']:,} answered, "
            f"{f.get('never_seen')} never seen, {f['errors']} errors; records store polled "
            f"every {f.get('poll_interval_ms', 0):.0f} ms; client CPU {f['client_cpu_percent']:.0f}%.",
            "",
        ]
    elif f is not None:
        lines += [f"**Freshness: failed** `{f['error'].splitlines()[0][:300]}`", ""]
    return lines


def soak_section(r: dict[str, Any]) -> list[str]:
    s = r.get("soak")
    if s is None:
        return ["## Memory over time", "", "Not run in this set (`benchmarks/run --soak`).", ""]
    if "error" in s:
        return ["## Memory over time", "", f"Failed: `{s['error'][:300]}`", ""]
    lines = [
        "## Memory over time",
        "",
        f"`llmtap serve` at {s['rate']:.0f} req/s for {s['duration_s'] / 60:.0f} min; RSS sampled "
        f"every ~10 s. Growth after warm-up (mean of the last quarter of samples over the first "
        f"quarter, after the first minute): {100 * s.get('growth_after_warmup', 0):.1f}% → "
        f"{'flat' if s.get('flat') else '**not flat**'}.",
        "",
        "| t (s) | proxy RSS (MB) | all llmtap processes (MB) |",
        "| ---: | ---: | ---: |",
    ]
    samples = s["samples"]
    step = max(1, len(samples) // 12)
    shown = samples[::step]
    if samples and shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    for sample in shown:
        lines.append(f"| {sample['t_s']:.0f} | {sample['proxy_rss_mb']} | {sample['all_rss_mb']} |")
    load = s.get("load", {})
    lines += [
        "",
        f"Load: {load.get('answered', 0):,} calls answered, {load.get('errors', 0)} "
        f"errors, freshness p99 {_f(_get(load, 'freshness_ms', '99'), 0)} ms.",
        "",
    ]
    return lines


def render(r: dict[str, Any], findings: Path | None) -> str:
    lines = ["# llmtap benchmarks", ""]
    lines += machine_section(r)
    lines += targets_section(r)
    lines += scorecard_section(r)
    if findings is not None and findings.exists():
        lines += [findings.read_text().strip(), ""]
    lines += overhead_section(r)
    lines += unpinned_section(r)
    prof = r.get("profile_proxy")
    if prof:
        lines += ["### Where the proxy's time goes", ""]
        lines += profile_tables(prof, "")
    unpinned_prof = _get(r, "unpinned", "profile_proxy")
    if unpinned_prof:
        lines += ["### Where the proxy's time goes, unpinned", ""]
        lines += profile_tables(unpinned_prof, ", nothing pinned")
    lines += tls_section(r)
    lines += cache_section(r)
    lines += passthrough_section(r)
    lines += pipeline_section(r)
    lines += soak_section(r)
    lines += [
        "## Method",
        "",
        "See `docs/decisions/2026-11-25-benchmark-method.md`. Raw numbers: "
        f"`benchmarks/results/{r.get('file', '')}`.",
        "",
    ]
    merged = r.get("merged_from")
    if merged:
        lines += [
            "Parts measured in runs of their own and merged into this report (`python -m"
            " bench.merge`): "
            + ", ".join(f"`{part}` from `{name}`" for part, name in sorted(merged.items()))
            + ".",
            "",
        ]
    return "\n".join(lines)
