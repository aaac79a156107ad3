"""The cache together with retries, fallbacks and the rate limit on one call, with the official
SDKs against the mock upstream (``x-mock-fail-*`` knobs, its request counter) and the record
through the API: a cache miss goes through the retry/fallback stage, the answer that finally
reaches the client is what is saved, and a miss that saves nothing frees its slot at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from support.attempts_pipeline import AttemptsPipeline, attempts_pipeline, refused_port, tag
from support.probes import wait_for

FAST_RETRY = {"Helicone-Retry-Enabled": "true", "Helicone-Retry-Min-Timeout": "20"}
SERVER_ERRORS: list[Any] = [{"from": 500, "to": 599}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttemptsPipeline]:
    with attempts_pipeline(
        tmp_path_factory.mktemp("combined"),
        allowed_target_hosts=["127.0.0.1"],
        allow_private_targets=True,
        # a slot left claimed would make the next identical call wait this long, then go
        # uncached and save nothing: the tests below see a leak as a missing HIT, quickly
        cache_fill_wait_s=1.0,
    ) as pipeline:
        yield pipeline


def cached(key: str) -> dict[str, str]:
    """Cache on, in a namespace of this test's own (the seed), marked ``x-test: key``."""
    return {"x-test": key, "Helicone-Cache-Enabled": "true", "Helicone-Cache-Seed": key}


def failing(key: str, first: int, status: int = 503) -> dict[str, str]:
    return {
        "x-mock-fail-key": key,
        "x-mock-fail-first": str(first),
        "x-mock-fail-status": str(status),
    }


def chat(gw: AttemptsPipeline, headers: dict[str, str], **kwargs: Any) -> Any:
    return gw.openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "say something"}],
        extra_headers=headers,
        **kwargs,
    )


def saves_reach(gw: AttemptsPipeline, count: int) -> None:
    wait_for(lambda: gw.proxy.metrics.cache_saves >= count, timeout_s=5, what="the answer saved")


# -- cache + retries ----------------------------------------------------------------------------


def test_a_miss_is_retried_its_final_answer_saved_and_the_next_call_is_a_hit(
    gw: AttemptsPipeline,
) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    headers = {**cached(key), **FAST_RETRY, **failing(key, 2)}
    first = chat(gw, headers)
    assert first.http_response.status_code == 200
    assert first.headers["helicone-cache"] == "MISS"
    assert len(gw.seen(key)) == 3
    detail = gw.api_get(first.headers["helicone-id"])
    assert detail["attempts"] == 3
    assert [a["status"] for a in detail["attempt_log"]] == [503, 503, 200]
    assert detail["cache_hit"] is False

    saves_reach(gw, saves + 1)
    assert gw.proxy.metrics.cache_saves == saves + 1  # the held-back 503s were never saved
    before = gw.mock.request_count
    second = chat(gw, headers)
    assert second.headers["helicone-cache"] == "HIT"
    assert gw.mock.request_count == before  # zero provider requests
    assert len(gw.seen(key)) == 3
    assert second.parse().model_dump() == first.parse().model_dump()
    hit = gw.api_get(second.headers["helicone-id"])
    assert hit["cache_hit"] is True
    assert hit["attempts"] == 0


def test_a_streamed_miss_is_retried_then_saved_and_replayed(gw: AttemptsPipeline) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    headers = {**cached(key), **FAST_RETRY, **failing(key, 1, 429)}

    def streamed() -> tuple[str, str]:
        raw = chat(gw, headers, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        return raw.headers["helicone-cache"], text

    status, text = streamed()
    assert status == "MISS" and text
    assert len(gw.seen(key)) == 2
    saves_reach(gw, saves + 1)
    assert streamed() == ("HIT", text)
    assert len(gw.seen(key)) == 2


def test_an_anthropic_miss_is_retried_then_served_from_the_cache(gw: AttemptsPipeline) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves

    def message() -> Any:
        return gw.anthropic().messages.with_raw_response.create(
            model="claude-3-5-haiku-latest",
            max_tokens=50,
            messages=[{"role": "user", "content": "say something"}],
            extra_headers={**cached(key), **FAST_RETRY, **failing(key, 2, 500)},
        )

    first = message()
    assert first.headers["helicone-cache"] == "MISS"
    assert len(gw.seen(key)) == 3
    saves_reach(gw, saves + 1)
    second = message()
    assert second.headers["helicone-cache"] == "HIT"
    assert second.parse().content == first.parse().content
    assert len(gw.seen(key)) == 3


def test_a_miss_whose_retries_all_fail_saves_nothing_and_frees_its_slot(
    gw: AttemptsPipeline,
) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    headers = {**cached(key), **FAST_RETRY, "Helicone-Retry-Num": "2", **failing(key, 3)}
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gw, headers)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["helicone-cache"] == "MISS"
    assert len(gw.seen(key)) == 3
    detail = gw.api_get(caught.value.response.headers["helicone-id"])
    assert [a["status"] for a in detail["attempt_log"]] == [503, 503, 503]

    # the slot is free: the next identical call is the bucket's miss (not a waiter for a fill
    # that never comes), goes to the provider, and its answer is the one saved
    again = chat(gw, headers)
    assert again.headers["helicone-cache"] == "MISS"
    assert len(gw.seen(key)) == 4
    saves_reach(gw, saves + 1)
    third = chat(gw, headers)
    assert third.headers["helicone-cache"] == "HIT"
    assert len(gw.seen(key)) == 4


def test_a_miss_the_client_leaves_during_a_retry_wait_frees_its_slot(
    gw: AttemptsPipeline,
) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    headers = {
        **cached(key),
        "Helicone-Retry-Enabled": "true",
        "Helicone-Retry-Min-Timeout": "3000",
        **failing(key, 1),
    }
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say something"}]}
    url = gw.proxy.url + "/v1/chat/completions"
    auth = {"authorization": "Bearer sk-test", "helicone-auth": f"Bearer {gw.key}"}
    gone = gw.proxy.metrics.client_disconnects
    # the first attempt's 503 is held back for a 3 s wait; the client gives up during it
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=body, headers={**auth, **headers}, timeout=0.5)
    wait_for(
        lambda: gw.proxy.metrics.client_disconnects > gone, timeout_s=5, what="the call to end"
    )
    assert len(gw.seen(key)) == 1
    after = httpx.post(url, json=body, headers={**auth, **headers}, timeout=10)
    assert after.status_code == 200
    assert after.headers["helicone-cache"] == "MISS"
    saves_reach(gw, saves + 1)
    assert (
        httpx.post(url, json=body, headers={**auth, **headers}, timeout=10).headers[
            "helicone-cache"
        ]
        == "HIT"
    )
    assert len(gw.seen(key)) == 2  # the abandoned call's retry was never sent


def test_a_bad_retry_header_is_refused_before_the_cache_claims_a_slot(
    gw: AttemptsPipeline,
) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    with pytest.raises(openai.BadRequestError) as caught:
        chat(gw, {**cached(key), "Helicone-Retry-Enabled": "true", "Helicone-Retry-Num": "x"})
    assert caught.value.body is not None and "invalid_retry_header" in json.dumps(caught.value.body)
    assert gw.seen(key) == []
    first = chat(gw, {**cached(key), **FAST_RETRY})
    assert first.headers["helicone-cache"] == "MISS"
    saves_reach(gw, saves + 1)


# -- cache + fallbacks --------------------------------------------------------------------------


def fallbacks(gw: AttemptsPipeline, key: str) -> str:
    return json.dumps(
        [
            {
                "target-url": gw.mock.url,
                "headers": {"x-mock-status": "500", "x-test": key},
                "onCodes": SERVER_ERRORS,
            },
            {"target-url": gw.mock.url, "headers": {"x-test": key}, "onCodes": [500]},
        ]
    )


def test_a_fallbacks_answer_is_saved_under_the_calls_key_and_served_as_a_hit(
    gw: AttemptsPipeline,
) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    headers = {**cached(key), "Helicone-Fallbacks": fallbacks(gw, key)}
    first = chat(gw, headers)
    assert first.http_response.status_code == 200
    assert first.headers["helicone-cache"] == "MISS"
    assert first.headers["helicone-fallback-index"] == "1"
    assert len(gw.seen(key)) == 2
    detail = gw.api_get(first.headers["helicone-id"])
    assert detail["fallback_index"] == 1
    assert [(a["fallback_index"], a["status"]) for a in detail["attempt_log"]] == [
        (0, 500),
        (1, 200),
    ]

    saves_reach(gw, saves + 1)
    before = gw.mock.request_count
    second = chat(gw, headers)
    assert second.headers["helicone-cache"] == "HIT"
    assert gw.mock.request_count == before
    # no target answered the hit: it does not claim one did
    assert "helicone-fallback-index" not in second.headers
    assert second.parse().model_dump() == first.parse().model_dump()
    assert gw.api_get(second.headers["helicone-id"])["fallback_index"] is None


def test_the_fallback_list_is_part_of_the_key(gw: AttemptsPipeline) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    listed = {**cached(key), "Helicone-Fallbacks": fallbacks(gw, key)}
    assert chat(gw, listed).headers["helicone-cache"] == "MISS"
    saves_reach(gw, saves + 1)
    # the same call without the list, or with another list, was sent elsewhere: not its answer
    assert chat(gw, cached(key)).headers["helicone-cache"] == "MISS"
    other = json.dumps([{"target-url": gw.mock.url, "headers": {"x-test": key}, "onCodes": [500]}])
    assert chat(gw, {**cached(key), "Helicone-Fallbacks": other}).headers["helicone-cache"] == (
        "MISS"
    )
    assert chat(gw, listed).headers["helicone-cache"] == "HIT"


def test_a_miss_whose_every_target_fails_saves_nothing_and_frees_its_slot(
    gw: AttemptsPipeline,
) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    dead = f"http://127.0.0.1:{refused_port()}"
    listed = json.dumps(
        [
            {"target-url": dead, "headers": {"x-test": key}, "onCodes": [500]},
            {"target-url": gw.mock.url, "headers": {"x-test": key}, "onCodes": [500]},
        ]
    )
    headers = {**cached(key), "Helicone-Fallbacks": listed, **failing(key, 1, 500)}
    with pytest.raises(openai.InternalServerError):
        chat(gw, headers)
    assert len(gw.seen(key)) == 1
    again = chat(gw, headers)
    assert again.headers["helicone-cache"] == "MISS"
    assert again.headers["helicone-fallback-index"] == "1"
    saves_reach(gw, saves + 1)
    assert chat(gw, headers).headers["helicone-cache"] == "HIT"
    assert len(gw.seen(key)) == 2


# -- rate limit + cache + retries ---------------------------------------------------------------


def test_rate_limit_cache_and_retries_on_one_call(gw: AttemptsPipeline) -> None:
    key = tag()
    saves = gw.proxy.metrics.cache_saves
    headers = {
        **cached(key),
        **FAST_RETRY,
        **failing(key, 2),
        "Helicone-RateLimit-Policy": "3;w=60;s=user",
        "Helicone-User-Id": key,
    }
    first = chat(gw, headers)
    assert first.http_response.status_code == 200
    assert first.headers["helicone-cache"] == "MISS"
    assert first.headers["helicone-ratelimit-limit"] == "3"
    assert first.headers["helicone-ratelimit-remaining"] == "2"
    assert first.headers["helicone-ratelimit-policy"] == "3;w=60;u=request;s=user"
    assert "helicone-ratelimit-reset" in first.headers
    assert len(gw.seen(key)) == 3
    detail = gw.api_get(first.headers["helicone-id"])
    assert detail["attempts"] == 3
    assert [a["status"] for a in detail["attempt_log"]] == [503, 503, 200]

    saves_reach(gw, saves + 1)
    second = chat(gw, headers)
    assert second.headers["helicone-cache"] == "HIT"
    assert second.headers["helicone-ratelimit-remaining"] == "1"  # a hit counts as a call
    assert len(gw.seen(key)) == 3
    assert chat(gw, headers).headers["helicone-ratelimit-remaining"] == "0"
    with pytest.raises(openai.RateLimitError) as refused:
        chat(gw, headers)
    assert "helicone-cache" not in refused.value.response.headers
    assert len(gw.seen(key)) == 3


# -- the ends of a miss that happen outside the module's proxy -----------------------------------


def post(url: str, headers: dict[str, str], timeout: float = 30) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": "Bearer sk-test", **headers},
        timeout=timeout,
    )


def test_a_miss_cut_by_the_total_timeout_between_retries_frees_its_slot(
    gw: AttemptsPipeline, tmp_path: Path
) -> None:
    key = tag()
    settings = Settings(
        data_dir=tmp_path,
        proxy_port=0,
        openai_base_url=gw.mock.url,
        total_timeout_s=1.5,
        cache_fill_wait_s=0.5,
    )
    with ThreadedProxy(settings) as proxy:
        # each attempt takes 1 s: the second one runs past the 1.5 s total timeout
        slow = {**cached(key), **FAST_RETRY, **failing(key, 1), "x-mock-latency-ms": "1000"}
        cut = post(proxy.url, slow)
        assert cut.status_code == 504
        assert cut.json()["error"]["code"] == "upstream_total_timeout"
        fast = {**cached(key), **FAST_RETRY}
        assert post(proxy.url, fast).headers["helicone-cache"] == "MISS"
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="the answer saved")
        assert post(proxy.url, fast).headers["helicone-cache"] == "HIT"
    assert len(gw.seen(key)) == 3


def test_when_the_store_fails_the_uncached_call_still_gets_its_retries(
    gw: AttemptsPipeline, tmp_path: Path
) -> None:
    key = tag()
    settings = Settings(
        data_dir=tmp_path,
        proxy_port=0,
        openai_base_url=gw.mock.url,
        cache_url=f"redis://127.0.0.1:{refused_port()}/0",
        cache_timeout_s=0.3,
    )
    with ThreadedProxy(settings) as proxy:
        answer = post(proxy.url, {**cached(key), **FAST_RETRY, **failing(key, 2)})
        assert answer.status_code == 200
        assert "helicone-cache" not in answer.headers  # fail-open: uncached
        assert proxy.metrics.cache_errors + proxy.metrics.cache_bypassed >= 1
    assert len(gw.seen(key)) == 3


async def _concurrent(url: str, headers: dict[str, str], count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    url + "/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                    headers={"authorization": "Bearer sk-test", **headers},
                )
                for _ in range(count)
            )
        )


def test_identical_calls_wait_for_a_fill_that_is_being_retried(
    gw: AttemptsPipeline, tmp_path: Path
) -> None:
    key = tag()
    settings = Settings(data_dir=tmp_path, proxy_port=0, openai_base_url=gw.mock.url)
    with ThreadedProxy(settings) as proxy:
        # the filling call's first two attempts fail; the other 29 wait for its third's answer
        headers = {**cached(key), **FAST_RETRY, **failing(key, 2), "x-mock-latency-ms": "100"}
        replies = asyncio.run(_concurrent(proxy.url, headers, 30))
        assert [r.status_code for r in replies] == [200] * 30
        statuses = [r.headers.get("helicone-cache") for r in replies]
        assert statuses.count("MISS") == 1 and statuses.count("HIT") == 29
        assert len({r.json()["id"] for r in replies}) == 1
    assert len(gw.seen(key)) == 3


@pytest.mark.redis
def test_with_redis_a_retried_miss_is_saved_and_a_failed_one_frees_its_slot(
    gw: AttemptsPipeline, tmp_path: Path, redis_url: str
) -> None:
    key = tag()
    settings = Settings(
        data_dir=tmp_path,
        proxy_port=0,
        openai_base_url=gw.mock.url,
        cache_url=redis_url,
        cache_fill_wait_s=1.0,
    )
    with ThreadedProxy(settings) as proxy:
        failed = post(
            proxy.url, {**cached(key), **FAST_RETRY, "Helicone-Retry-Num": "1", **failing(key, 2)}
        )
        assert failed.status_code == 503
        # the mock counts failures per key: its third request fails too, its fourth answers
        retried = post(proxy.url, {**cached(key), **FAST_RETRY, **failing(key, 3)})
        assert retried.status_code == 200
        assert retried.headers["helicone-cache"] == "MISS"
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="the answer saved")
        assert post(proxy.url, cached(key)).headers["helicone-cache"] == "HIT"
    assert len(gw.seen(key)) == 4  # 503, 503, then 503, 200
