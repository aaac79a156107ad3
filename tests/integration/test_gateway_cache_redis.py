"""The response cache with its store in Redis (``LLMTAP_CACHE_URL=redis://...``): shared by
proxies that share nothing else, exact bucket claims under concurrency, and fail-open when Redis
cannot be reached. Each test works under a cache seed of its own: the server is shared."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llmtap.testing.mock_upstream import MockUpstream
from support.gateway_cache import CHAT, ON, cache_proxy, cache_status, chat
from support.probes import wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


@pytest.fixture
def seeded() -> dict[str, str]:
    return {**ON, "Helicone-Cache-Seed": uuid.uuid4().hex}


def test_two_proxies_with_separate_data_share_one_redis_cache(
    tmp_path: Path, mock: MockUpstream, redis_url: str, seeded: dict[str, str]
) -> None:
    with (
        cache_proxy(tmp_path, mock, data_dir=tmp_path / "one", cache_url=redis_url) as one,
        cache_proxy(tmp_path, mock, data_dir=tmp_path / "two", cache_url=redis_url) as two,
    ):
        client = openai.OpenAI(base_url=one.url + "/v1", api_key="sk-one", max_retries=0)
        stream = client.chat.completions.create(**CHAT, stream=True, extra_headers=seeded)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        wait_for(lambda: one.metrics.cache_saves == 1, timeout_s=5, what="saved")
        other = openai.OpenAI(base_url=two.url + "/v1", api_key="sk-one", max_retries=0)
        raw = other.chat.completions.with_raw_response.create(
            **CHAT, stream=True, extra_headers=seeded
        )
        assert raw.headers["helicone-cache"] == "HIT"
        replayed = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        assert replayed == text
        assert cache_status(chat(two.url, seeded))[0] == "MISS"  # JSON is another key
        wait_for(lambda: two.metrics.cache_saves == 1, timeout_s=5, what="saved")
        assert cache_status(chat(one.url, seeded)) == ("HIT", "0")
        assert mock.request_count == 2
        # another caller's key never shares
        assert cache_status(chat(one.url, seeded, key="sk-caller-two"))[0] == "MISS"
        assert not (tmp_path / "one" / "cache.db").exists()


async def _concurrent(urls: list[str], headers: dict[str, str], count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as client:
        calls = [
            client.post(
                urls[i % len(urls)] + "/v1/chat/completions",
                json=CHAT,
                headers={"authorization": "Bearer sk-one", **headers},
            )
            for i in range(count)
        ]
        return await asyncio.gather(*calls)


def test_100_concurrent_calls_over_two_proxies_fill_a_bucket_of_3_exactly(
    tmp_path: Path, mock: MockUpstream, redis_url: str, seeded: dict[str, str]
) -> None:
    headers = {**seeded, "Helicone-Cache-Bucket-Max-Size": "3", "x-mock-latency-ms": "300"}
    # Both proxies and the 100 clients share this process's GIL: on a loaded machine one Redis
    # command past the default 1 s timeout sends the rest uncached (fail-open, tested below),
    # which is not what this test is about.
    roomy = {"cache_url": redis_url, "cache_timeout_s": 10.0}
    with (
        cache_proxy(tmp_path, mock, data_dir=tmp_path / "one", **roomy) as one,
        cache_proxy(tmp_path, mock, data_dir=tmp_path / "two", **roomy) as two,
    ):
        replies = asyncio.run(_concurrent([one.url, two.url], headers, 100))
        assert [r.status_code for r in replies] == [200] * 100
        assert (one.metrics.cache_errors, two.metrics.cache_errors) == (0, 0)
        assert mock.request_count == 3
        statuses = [cache_status(r)[0] for r in replies]
        assert statuses.count("MISS") == 3 and statuses.count("HIT") == 97
        assert len({r.json()["id"] for r in replies}) == 3


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def test_an_unreachable_redis_lets_every_call_through_uncached(
    tmp_path: Path, mock: MockUpstream
) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    with cache_proxy(tmp_path, mock, cache_url=url) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-one", max_retries=0)
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(**CHAT, extra_headers=ON)
            assert raw.status_code == 200
            assert "helicone-cache" not in raw.headers
            stream = client.chat.completions.create(**CHAT, stream=True, extra_headers=ON)
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert mock.request_count == 6
        metrics = proxy.metrics
        assert metrics.cache_errors >= 1
        assert metrics.cache_errors + metrics.cache_bypassed == 6
        assert metrics.cache_hits == 0 and metrics.internal_errors == 0
        body = httpx.get(proxy.url + "/_llmtap/metrics").text
        assert f"llmtap_proxy_cache_errors_total {metrics.cache_errors}" in body
