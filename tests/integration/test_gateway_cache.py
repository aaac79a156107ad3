"""The response cache (``Helicone-Cache-*``), embedded mode: every header, JSON and streams, with
the official SDKs against the mock upstream, whose request counter proves a hit never reached it.

Store: SQLite in the data directory (``<data_dir>/cache.db``), as ``llmtap serve`` runs it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llmtap.testing.mock_upstream import MockUpstream
from support.gateway_cache import CHAT, MESSAGES, ON, cache_proxy, cache_status, chat
from support.probes import wait_for
from support.processes import ProxyProcess, llmtap_env


@pytest.fixture
def mock() -> Any:
    with MockUpstream() as upstream:
        yield upstream


def test_a_json_answer_is_served_from_the_cache_without_the_provider(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-one", max_retries=0)
        first = client.chat.completions.with_raw_response.create(**CHAT, extra_headers=ON)
        assert first.headers["helicone-cache"] == "MISS"
        assert first.headers["llmtap-cache"] == "MISS"
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="the answer saved")
        second = client.chat.completions.with_raw_response.create(**CHAT, extra_headers=ON)
        assert second.headers["helicone-cache"] == second.headers["llmtap-cache"] == "HIT"
        assert second.headers["helicone-cache-bucket-idx"] == "0"
        assert second.headers["helicone-id"] != first.headers["helicone-id"]
        assert mock.request_count == 1
        assert second.parse().model_dump() == first.parse().model_dump()
        # a plain call is not looked up, and says nothing about the cache
        plain = client.chat.completions.with_raw_response.create(**CHAT)
        assert "helicone-cache" not in plain.headers
        assert mock.request_count == 2
        assert proxy.metrics.cache_hits == 1 and proxy.metrics.cache_misses == 1


def test_an_openai_stream_is_replayed_as_sse(tmp_path: Path, mock: MockUpstream) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-one", max_retries=0)

        def streamed() -> tuple[str, str, Any]:
            raw = client.chat.completions.with_raw_response.create(
                **CHAT, stream=True, stream_options={"include_usage": True}, extra_headers=ON
            )
            assert raw.headers["content-type"].startswith("text/event-stream")
            chunks = list(raw.parse())
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return raw.headers["helicone-cache"], text, chunks[-1].usage

        status, text, usage = streamed()
        assert status == "MISS" and text and usage is not None
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="the stream saved")
        assert streamed() == ("HIT", text, usage)
        assert mock.request_count == 1


def test_a_stream_without_usage_asked_hides_the_usage_chunk_on_a_hit_too(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-one", max_retries=0)

        def usages() -> list[Any]:
            stream = client.chat.completions.create(**CHAT, stream=True, extra_headers=ON)
            return [c.usage for c in stream]

        assert set(usages()) == {None}
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="the stream saved")
        assert set(usages()) == {None}
        assert proxy.metrics.cache_hits == 1 and mock.request_count == 1


def test_an_anthropic_message_and_stream_are_cached(tmp_path: Path, mock: MockUpstream) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        client = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-one", max_retries=0)
        first = client.messages.with_raw_response.create(**MESSAGES, extra_headers=ON)
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        second = client.messages.with_raw_response.create(**MESSAGES, extra_headers=ON)
        assert (first.headers["helicone-cache"], second.headers["helicone-cache"]) == (
            "MISS",
            "HIT",
        )
        assert second.parse().model_dump() == first.parse().model_dump()

        def streamed() -> str:
            with client.messages.stream(**MESSAGES, extra_headers=ON) as stream:
                return "".join(stream.text_stream)

        text = streamed()
        wait_for(lambda: proxy.metrics.cache_saves == 2, timeout_s=5, what="stream saved")
        assert streamed() == text
        assert mock.request_count == 2 and proxy.metrics.cache_hits == 2


def test_read_only_and_save_only(tmp_path: Path, mock: MockUpstream) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        read_only = {"Helicone-Cache-Read": "true"}
        assert cache_status(chat(proxy.url, read_only)) == ("MISS", None)
        assert cache_status(chat(proxy.url, read_only)) == ("MISS", None)
        assert proxy.metrics.cache_saves == 0 and mock.request_count == 2
        assert cache_status(chat(proxy.url, {"Llmtap-Cache-Save": "true"}))[0] == "MISS"
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        # save-only never reads: it goes to the provider and refreshes the slot
        assert cache_status(chat(proxy.url, {"Helicone-Cache-Save": "true"}))[0] == "MISS"
        assert mock.request_count == 4
        assert cache_status(chat(proxy.url, read_only)) == ("HIT", "0")
        # Enabled with Read: false saves without reading
        no_read = {**ON, "Helicone-Cache-Read": "false"}
        assert cache_status(chat(proxy.url, no_read))[0] == "MISS"
        assert mock.request_count == 5


def test_the_seed_and_the_ignored_keys_shape_the_key(tmp_path: Path, mock: MockUpstream) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        seeded = {**ON, "Helicone-Cache-Seed": "alpha"}
        chat(proxy.url, seeded)
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        assert cache_status(chat(proxy.url, seeded))[0] == "HIT"
        assert cache_status(chat(proxy.url, {**ON, "Helicone-Cache-Seed": "beta"}))[0] == "MISS"
        assert cache_status(chat(proxy.url, ON))[0] == "MISS"  # no seed: a namespace of its own

        ignoring = {**ON, "Helicone-Cache-Ignore-Keys": "user, metadata"}
        chat(proxy.url, ignoring, {**CHAT, "user": "u-1", "metadata": {"run": 1}})
        wait_for(lambda: proxy.metrics.cache_saves == 4, timeout_s=5, what="saved")
        other_user = {**CHAT, "user": "u-2", "metadata": {"run": 2}}
        assert cache_status(chat(proxy.url, ignoring, other_user))[0] == "HIT"
        # a key left out of the list still counts
        other_model = {**other_user, "model": "gpt-4o"}
        assert cache_status(chat(proxy.url, ignoring, other_model))[0] == "MISS"
        # the same call without the ignore list is another key
        assert cache_status(chat(proxy.url, ON, other_user))[0] == "MISS"


def test_a_bucket_fills_n_slots_then_serves_a_random_one(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        bucket = {**ON, "Helicone-Cache-Bucket-Max-Size": "3"}
        answers = set()
        for n in range(3):
            reply = chat(proxy.url, bucket)
            assert cache_status(reply) == ("MISS", None)
            answers.add(reply.json()["id"])
            wait_for(lambda n=n: proxy.metrics.cache_saves == n + 1, timeout_s=5, what="saved")
        served = set()
        idxs = set()
        for _ in range(40):
            reply = chat(proxy.url, bucket)
            status, idx = cache_status(reply)
            assert status == "HIT"
            idxs.add(idx)
            served.add(reply.json()["id"])
        assert mock.request_count == 3
        assert served == answers and idxs == {"0", "1", "2"}  # 3**-39 odds of missing one
        # the bucket size is part of the key
        assert (
            cache_status(chat(proxy.url, {**ON, "Helicone-Cache-Bucket-Max-Size": "2"}))[0]
            == "MISS"
        )


async def _concurrent(url: str, headers: dict[str, str], count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        calls = [
            client.post(
                url + "/v1/chat/completions",
                json=CHAT,
                headers={"authorization": "Bearer sk-one", **headers},
            )
            for _ in range(count)
        ]
        return await asyncio.gather(*calls)


def test_100_concurrent_identical_calls_with_a_bucket_of_3_reach_the_provider_3_times(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        # the provider answers slowly, so all 100 arrive while the 3 slots are being filled
        headers = {**ON, "Helicone-Cache-Bucket-Max-Size": "3", "x-mock-latency-ms": "300"}
        replies = asyncio.run(_concurrent(proxy.url, headers, 100))
        assert [r.status_code for r in replies] == [200] * 100
        assert mock.request_count == 3
        statuses = [cache_status(r)[0] for r in replies]
        assert statuses.count("MISS") == 3 and statuses.count("HIT") == 97
        assert len({r.json()["id"] for r in replies}) == 3


def test_cache_control_sets_how_long_an_answer_lives(tmp_path: Path, mock: MockUpstream) -> None:
    def expiries() -> list[int]:
        with sqlite3.connect(tmp_path / "data" / "cache.db") as db:
            return [row[0] for row in db.execute("SELECT expires_ms FROM cache_slots")]

    day_ms = 24 * 3600 * 1000
    with cache_proxy(tmp_path, mock) as proxy:
        cases = [
            ({}, 7 * day_ms),
            ({"Cache-Control": "max-age=60"}, 60_000),
            ({"Cache-Control": "max-age=60, s-maxage=120"}, 120_000),
            ({"Cache-Control": "max-age=99999999999999"}, 365 * day_ms),
            ({"Cache-Control": "max-age=soon"}, 7 * day_ms),
        ]
        seen: list[int] = []
        for n, (extra, ttl_ms) in enumerate(cases):
            before = time.time() * 1000
            chat(proxy.url, {**ON, "Helicone-Cache-Seed": str(n), **extra})
            wait_for(lambda n=n: proxy.metrics.cache_saves == n + 1, timeout_s=5, what="saved")
            [newest] = [e for e in expiries() if e not in seen]
            seen.append(newest)
            assert before + ttl_ms <= newest <= time.time() * 1000 + ttl_ms, extra
        # max-age=0: nothing is kept
        zero = {**ON, "Helicone-Cache-Seed": "zero", "Cache-Control": "max-age=0"}
        chat(proxy.url, zero)
        assert cache_status(chat(proxy.url, zero))[0] == "MISS"


def test_errors_are_not_cached(tmp_path: Path, mock: MockUpstream) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        failing = {**ON, "x-mock-status": "500"}
        assert chat(proxy.url, failing).status_code == 500
        assert chat(proxy.url, failing).status_code == 500
        assert mock.request_count == 2 and proxy.metrics.cache_saves == 0
        # the claim was released: the next call fills the slot
        assert cache_status(chat(proxy.url, ON))[0] == "MISS"
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        assert cache_status(chat(proxy.url, ON))[0] == "HIT"


@pytest.mark.parametrize(
    "other",
    [
        {"key": "sk-caller-two"},
        {"headers": {"Helicone-Auth": "Bearer sk-llmtap-other"}},
        {"headers": {"OpenAI-Organization": "org-other"}},
        {"headers": {"OpenAI-Project": "proj-other"}},
    ],
    ids=["provider-key", "llmtap-key", "openai-organization", "openai-project"],
)
def test_another_key_or_organization_never_gets_a_hit(
    tmp_path: Path, mock: MockUpstream, other: dict[str, Any]
) -> None:
    with cache_proxy(tmp_path, mock, auth_gate=False) as proxy:
        chat(proxy.url, ON)
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        assert cache_status(chat(proxy.url, ON))[0] == "HIT"
        headers = {**ON, **other.get("headers", {})}
        reply = chat(proxy.url, headers, key=other.get("key", "sk-caller-one"))
        assert cache_status(reply)[0] == "MISS"
        assert mock.request_count == 2
    # the credentials enter only the hash
    assert b"sk-caller" not in (tmp_path / "data" / "cache.db").read_bytes()


def test_two_proxy_processes_share_the_embedded_cache(tmp_path: Path, mock: MockUpstream) -> None:
    env = llmtap_env(
        {
            "LLMTAP_DATA_DIR": str(tmp_path / "data"),
            "LLMTAP_OPENAI_BASE_URL": mock.url,
            "LLMTAP_ANTHROPIC_BASE_URL": mock.url,
        }
    )
    one = ProxyProcess(env, tmp_path / "one.log").start()
    two = ProxyProcess(env, tmp_path / "two.log").start()
    try:
        assert cache_status(chat(one.url, ON))[0] == "MISS"
        wait_for(
            lambda: one.metrics().get("llmtap_proxy_cache_saves_total") == 1,
            timeout_s=10,
            what="saved by the first process",
        )
        assert cache_status(chat(two.url, ON)) == ("HIT", "0")
        assert mock.request_count == 1
    finally:
        one.stop()
        two.stop()


def test_a_large_body_is_keyed_off_the_loop_and_cached_like_any(
    tmp_path: Path, mock: MockUpstream
) -> None:
    big = {**CHAT, "user": "u-1", "metadata": {"blob": "x" * 2_000_000}}
    ignoring = {**ON, "Helicone-Cache-Ignore-Keys": "user"}
    with cache_proxy(tmp_path, mock) as proxy:
        assert cache_status(chat(proxy.url, ignoring, big))[0] == "MISS"
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        assert cache_status(chat(proxy.url, ignoring, {**big, "user": "u-2"}))[0] == "HIT"
        changed = {**big, "metadata": {"blob": "x" * 1_999_999 + "y"}}
        assert cache_status(chat(proxy.url, ignoring, changed))[0] == "MISS"
        assert mock.request_count == 2 and proxy.metrics.internal_errors == 0


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def test_llmtap_s_own_502_and_504_for_a_cache_miss_say_miss(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with cache_proxy(tmp_path, mock, total_timeout_s=0.5) as proxy:
        # the provider too slow: the sweep's 504 goes to the exchange, not through the relay
        slow = chat(proxy.url, {**ON, "x-mock-latency-ms": "5000"})
        assert slow.status_code == 504 and slow.headers["llmtap-error"] == "upstream_total_timeout"
        assert (slow.headers["helicone-cache"], slow.headers["llmtap-cache"]) == ("MISS", "MISS")
    with cache_proxy(
        tmp_path,
        mock,
        data_dir=tmp_path / "down",
        openai_base_url=f"http://127.0.0.1:{_closed_port()}",
    ) as proxy:
        down = chat(proxy.url, ON)
        assert down.status_code == 502
        assert (down.headers["helicone-cache"], down.headers["llmtap-cache"]) == ("MISS", "MISS")
        # a call that did not ask for the cache says nothing about it
        plain = chat(proxy.url)
        assert plain.status_code == 502 and "helicone-cache" not in plain.headers
        assert proxy.metrics.cache_saves == 0
