"""The scorecard of issue 13 ("at scale") and issue 14's cost targets, each read from one run.

Every target of those issues, as its text states it, next to what this run measured: the proxy's
ratios to nginx and LiteLLM in the same run, in the pinned layout (``overhead``) and, when the
run carries one, the unpinned layout (``unpinned``, merged in by ``bench.merge``); the consumer's
rates; the catch-up; memory over the soak; the cache and rate-limit costs. A target the run did
not measure shows "-" and is neither met nor missed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

Row = tuple[str, str, str, bool | None]


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _num(value: float | None, unit: str, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


class _Card:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(
        self,
        what: str,
        goal: str,
        value: float | None,
        test: Callable[[float], bool],
        shown: str | None = None,
    ) -> None:
        ok = None if value is None else test(value)
        self.rows.append((what, goal, shown if shown is not None else "-", ok))


def _ratio(o: dict[str, Any], name: str, other: str, c: str = "64") -> float | None:
    mine, theirs = _get(o, name, "json", c, "rps"), _get(o, other, "json", c, "rps")
    return mine / theirs if mine and theirs else None


def _p99_ms(o: dict[str, Any], name: str, c: str) -> float | None:
    us = _get(o, name, "json", c, "latency_us", "99")
    return None if us is None else us / 1000


def _proxy_rows(card: _Card, o: dict[str, Any], added: dict[str, Any], layout: str) -> None:
    name = "llmtap-proxy"
    if name not in o or "nginx" not in o:
        return
    mine, ng = _get(added, name, "json", "1", "50"), _get(added, "nginx", "json", "1", "50")
    if mine is not None and ng:
        card.add(
            f"proxy, {layout}: added p50 at c=1 vs nginx's",
            "≤ 1.5x",
            mine / ng,
            lambda v: v <= 1.5,
            f"{mine / ng:.2f}x ({mine:.3f} vs {ng:.3f} ms)",
        )
    p99 = _get(added, name, "json", "1", "99")
    card.add(
        f"proxy, {layout}: added p99 at c=1",
        "≤ 0.5 ms",
        p99,
        lambda v: v <= 0.5,
        _num(p99, " ms", 3),
    )
    ratio = _ratio(o, name, "nginx")
    card.add(
        f"proxy, {layout}: req/s at c=64 vs nginx",
        "≥ 0.5x",
        ratio,
        lambda v: v >= 0.5,
        _num(ratio, "x", 2),
    )
    mine_p99, ng_p99 = _p99_ms(o, name, "64"), _p99_ms(o, "nginx", "64")
    if mine_p99 is not None and ng_p99:
        card.add(
            f"proxy, {layout}: p99 at c=64 vs nginx's",
            "≤ 2x",
            mine_p99 / ng_p99,
            lambda v: v <= 2,
            f"{mine_p99 / ng_p99:.2f}x ({mine_p99:.1f} vs {ng_p99:.1f} ms)",
        )
    for c in ("16", "64"):
        cpu = _get(o, name, "json", c, "gateway_cpu_us_per_call")
        card.add(
            f"proxy, {layout}: CPU per logged call, c={c}",
            "≤ 60 µs",
            cpu,
            lambda v: v <= 60,
            _num(cpu, " µs", 0),
        )
    lite = _ratio(o, name, "litellm")
    card.add(
        f"proxy, {layout}: req/s at c=64 vs LiteLLM",
        "≥ 50x",
        lite,
        lambda v: v >= 50,
        _num(lite, "x", 1),
    )
    ttft = _get(added, name, "stream", "1", "ttft", "50")
    card.add(
        f"proxy, {layout}: added TTFT p50, streams, c=1",
        "≤ 0.2 ms",
        ttft,
        lambda v: v <= 0.2,
        _num(ttft, " ms", 3),
    )
    serve = _ratio(o, "llmtap", "nginx")
    card.add(
        f"serve, {layout}: req/s at c=64 vs nginx",
        "≥ 0.35x",
        serve,
        lambda v: v >= 0.35,
        _num(serve, "x", 2),
    )


def _consumer_rows(card: _Card, r: dict[str, Any]) -> None:
    emb = _get(r, "pipeline_embedded", "records_per_s")
    card.add(
        "consumer, embedded stores, one process",
        "≥ 20,000 records/s",
        emb,
        lambda v: v >= 20000,
        _num(emb, "/s", 0),
    )
    dist = _get(r, "pipeline_distributed", "records_per_s")
    card.add(
        "consumer, Kafka → Postgres + S3, one process",
        "≥ 5,000 records/s",
        dist,
        lambda v: v >= 5000,
        _num(dist, "/s", 0),
    )
    two = _get(r, "pipeline_distributed", "two_consumers", "records_per_s")
    if dist and two:
        card.add(
            "consumer, distributed: two processes vs one",
            "≥ 1.7x",
            two / dist,
            lambda v: v >= 1.7,
            f"{two / dist:.2f}x ({two:,.0f}/s)",
        )
    drain = _get(r, "catchup", "drain_s")
    outage = _get(r, "catchup", "outage_s")
    if drain is not None:
        card.add(
            f"catch-up after a {outage / 60:.0f}-minute outage at 500 calls/s",
            "≤ 120 s",
            drain,
            lambda v: v <= 120,
            _num(drain, " s", 1),
        )
    growth = _get(r, "soak", "growth_after_warmup")
    if growth is not None:
        card.add(
            "memory over the 10-minute soak (growth after warm-up)",
            "flat (< 10 %)",
            100 * growth,
            lambda v: v < 10,
            _num(100 * growth, " %", 1),
        )


def _gateway_rows(card: _Card, r: dict[str, Any]) -> None:
    stores = _get(r, "cache", "stores") or {}
    for store, res in stores.items():
        if "(base)" in store:
            continue
        plain, hit = res.get("plain/json/64"), res.get("hit/json/64")
        if plain and hit and plain.get("rps"):
            ratio = hit["rps"] / plain["rps"]
            card.add(
                f"cache hit at c=64 vs a plain call, {store}",
                "≥ 1x req/s",
                ratio,
                lambda v: v >= 1,
                f"{ratio:.2f}x ({hit['rps']:,.0f} vs {plain['rps']:,.0f})",
            )
        one = res.get("hit/json/1")
        if one and "added_p50_ms" in one:
            card.add(
                f"cache hit added p50 at c=1, {store}",
                "≤ 0.3 ms",
                one["added_p50_ms"],
                lambda v: v <= 0.3,
                _num(one["added_p50_ms"], " ms", 3),
            )


def _at_most(limit: float, value: float) -> bool:
    return value <= limit


def _ratelimit_rows(card: _Card, r: dict[str, Any]) -> None:
    for store, limit in (("embedded", 0.1), ("redis", 0.5)):
        added = _get(r, "ratelimit", store, "added_p50_ms")
        card.add(
            f"rate-limit check added p50 at c=1, {store}",
            f"≤ {limit} ms",
            added,
            partial(_at_most, limit),
            _num(added, " ms", 3),
        )


def scorecard_section(r: dict[str, Any]) -> list[str]:
    card = _Card()
    _proxy_rows(card, r.get("overhead", {}), r.get("added_latency_ms", {}), "pinned")
    unpinned = r.get("unpinned") or {}
    _proxy_rows(
        card, unpinned.get("overhead", {}), unpinned.get("added_latency_ms", {}), "unpinned"
    )
    _consumer_rows(card, r)
    _gateway_rows(card, r)
    if "ratelimit" in r:
        _ratelimit_rows(card, r)
    if not card.rows:
        return []
    lines = [
        "## Issue 13 and 14 targets, this run",
        "",
        "Each target as the issue states it; ratios are to nginx / LiteLLM measured in the same run"
        " (the unpinned rows in their own run, merged into this report: see Method). Where a"
        " target is missed, the findings and the profile sections say where the time goes.",
        "",
        "| target | goal | measured | met |",
        "| --- | --- | ---: | :---: |",
    ]
    for what, goal, shown, ok in card.rows:
        mark = "-" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {what} | {goal} | {shown} | {mark} |")
    return [*lines, ""]
