"""Rate limits are exact across proxy processes: two ``llmtap proxy`` processes sharing one data
directory (the embedded store) or one Redis (``LLMTAP_CACHE_URL``), 200 concurrent calls against
a quota of 50, and exactly 50 pass. Also: a window's end starts the budget afresh, and a Redis
that cannot be reached lets calls through (fail-open, counted)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from llmtap.consumer.call_price import pricer_factory
from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream, expected_usage
from support.probes import wait_for
from support.processes import ProxyProcess, free_port, llmtap_env

REDIS_URL = os.environ.get("LLMTAP_TEST_REDIS_URL", "")
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _env(mock: MockUpstream, data: Path, **extra: str) -> dict[str, str]:
    return llmtap_env(
        {
            "LLMTAP_DATA_DIR": str(data),
            "LLMTAP_OPENAI_BASE_URL": mock.url,
            # exactness is what is measured here, not the fail-open deadline of a busy machine
            "LLMTAP_RATELIMIT_STORE_TIMEOUT_S": "10",
            **extra,
        }
    )


@pytest.fixture(scope="module", params=["embedded", "redis"])
def proxies(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    mock_upstream: MockUpstream,
) -> Iterator[tuple[str, Path, list[ProxyProcess]]]:
    mode: str = request.param
    extra = {}
    if mode == "redis":
        if not REDIS_URL:
            pytest.skip("LLMTAP_TEST_REDIS_URL is not set (scripts/services/redis.sh)")
        extra["LLMTAP_CACHE_URL"] = REDIS_URL
    data = tmp_path_factory.mktemp(f"rl-{mode}") / "data"
    procs = [
        ProxyProcess(_env(mock_upstream, data, **extra), data.parent / f"proxy{i}.log")
        for i in range(2)
    ]
    try:
        for proc in procs:
            proc.start()
        yield mode, data, procs
    finally:
        for proc in procs:
            if proc.alive:
                proc.stop()


async def _burst(urls: list[str], headers: dict[str, str], calls: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=calls, max_keepalive_connections=calls)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        return await asyncio.gather(
            *(
                client.post(
                    urls[i % len(urls)] + "/v1/chat/completions",
                    json=BODY,
                    headers={"authorization": "Bearer sk-provider", **headers},
                )
                for i in range(calls)
            )
        )


def test_200_concurrent_calls_through_two_processes_against_a_quota_of_50_pass_exactly_50(
    proxies: tuple[str, Path, list[ProxyProcess]],
) -> None:
    _, _, procs = proxies
    headers = {
        "Helicone-RateLimit-Policy": "50;w=3600;s=user",
        "Helicone-User-Id": str(uuid.uuid4()),
    }
    responses = asyncio.run(_burst([p.url for p in procs], headers, 200))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 50 and statuses.count(429) == 150
    # each allowed call saw a different count: no two processes handed out the same unit
    remaining = sorted(
        int(r.headers["helicone-ratelimit-remaining"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(50))
    for proc in procs:
        assert proc.metrics()["llmtap_proxy_ratelimit_failopen_total"] == 0
    limited = sum(p.metrics()["llmtap_proxy_rate_limited_total"] for p in procs)
    assert limited == 150


def _end_the_window(mode: str, data: Path) -> None:
    """What time does to a window, without waiting a minute: its stored end is now."""
    if mode == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        try:
            for key in client.scan_iter("llmtap:ratelimit:*"):
                client.pexpire(key, 1)
        finally:
            client.close()
        return
    with sqlite3.connect(data / "ratelimits.db") as db:
        db.execute("UPDATE buckets SET window_end_ms = ?", (int(time.time() * 1000),))


def test_when_the_window_ends_the_budget_starts_afresh(
    proxies: tuple[str, Path, list[ProxyProcess]],
) -> None:
    mode, data, procs = proxies
    headers = {"Helicone-RateLimit-Policy": "2;w=60;s=user", "Helicone-User-Id": str(uuid.uuid4())}
    first = asyncio.run(_burst([procs[0].url], headers, 3))
    assert sorted(r.status_code for r in first) == [200, 200, 429]
    _end_the_window(mode, data)
    again = asyncio.run(_burst([procs[1].url], headers, 1))[0]
    assert again.status_code == 200
    assert again.headers["helicone-ratelimit-remaining"] == "1"
    assert 58 <= int(again.headers["helicone-ratelimit-reset"]) <= 60


def test_calls_go_through_and_are_counted_when_redis_cannot_be_reached(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    env = _env(
        mock_upstream,
        tmp_path / "data",
        LLMTAP_CACHE_URL=closed,
        LLMTAP_RATELIMIT_STORE_TIMEOUT_S="0.25",
    )
    proc = ProxyProcess(env, tmp_path / "proxy.log").start()
    try:
        headers = {"Helicone-RateLimit-Policy": "1;w=60"}
        responses = asyncio.run(_burst([proc.url], headers, 3))
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert not any("helicone-ratelimit-limit" in r.headers for r in responses)
        assert proc.metrics()["llmtap_proxy_ratelimit_failopen_total"] == 3
    finally:
        proc.stop()


def test_an_in_process_proxy_on_redis_limits_and_stops_cleanly(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    if not REDIS_URL:
        pytest.skip("LLMTAP_TEST_REDIS_URL is not set (scripts/services/redis.sh)")
    settings = Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock_upstream.url,
        cache_url=REDIS_URL,
    )
    headers = {"Helicone-RateLimit-Policy": "1;w=60;s=user", "Helicone-User-Id": str(uuid.uuid4())}
    with ThreadedProxy(settings) as proxy:
        statuses = [r.status_code for r in asyncio.run(_burst([proxy.url], headers, 2))]
        assert sorted(statuses) == [200, 429]
        assert proxy.metrics.ratelimit_failopen == 0


def test_a_cents_budget_in_redis_is_charged_each_calls_real_cost(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    if not REDIS_URL:
        pytest.skip("LLMTAP_TEST_REDIS_URL is not set (scripts/services/redis.sh)")
    model = "rl-redis-priced"
    prices = {model: {"input": 1_000_000.0, "output": 0.0}}  # $1 a token: 100 cents
    settings = Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=mock_upstream.url,
        cache_url=REDIS_URL,
        price_overrides=prices,
    )
    body = {"model": model, "messages": BODY["messages"]}
    call_cents = expected_usage("/v1/chat/completions", body).input_tokens * 100
    user = str(uuid.uuid4())
    headers = {
        "Helicone-RateLimit-Policy": f"{call_cents};w=600;u=cents;s=user",
        "Helicone-User-Id": user,
        "Authorization": "Bearer sk-provider",
    }
    client = redis.Redis.from_url(REDIS_URL)
    with ThreadedProxy(settings, pricer=pricer_factory(prices)) as proxy:
        first = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers)
        assert first.status_code == 200
        assert first.headers["helicone-ratelimit-remaining"] == str(call_cents)
        # the call's cost, in millionths of a cent, lands in its budget after the answer
        wait_for(
            lambda: [int(client.get(k) or 0) for k in client.scan_iter("llmtap:ratelimit:*")].count(
                call_cents * 1_000_000
            ),
            what="the charge in Redis",
        )
        second = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers)
        assert second.status_code == 429
        assert second.headers["helicone-ratelimit-remaining"] == "0"
    client.close()
