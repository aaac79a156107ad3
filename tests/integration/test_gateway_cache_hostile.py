"""Hostile input to the response cache: cache headers no call can mean, huge and garbage values,
ignore-keys on a body that is not JSON, and answers that must never be served from the cache
(cut by the capture limit, too large, cut by the provider or by the client, or claiming to be
cache hits themselves)."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from llmtap.errors import ConfigError
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway_cache import CHAT, MESSAGES, ON, cache_proxy, cache_status, chat
from support.probes import wait_for


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


@pytest.mark.parametrize("size", ["0", "21", "-1", "abc", "1.5", "", "9" * 400])
def test_a_bucket_size_outside_1_to_20_is_a_400_in_the_providers_shape(
    tmp_path: Path, mock: MockUpstream, size: str
) -> None:
    bucket = {**ON, "Helicone-Cache-Bucket-Max-Size": size}
    with cache_proxy(tmp_path, mock) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-one", max_retries=0)
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(**CHAT, extra_headers=bucket)
        assert raised.value.code == "invalid_cache_header"
        assert "Bucket-Max-Size" in raised.value.message
        assert len(raised.value.message) < 200  # the value is quoted cut short
        ant = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant", max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as refused:
            ant.messages.create(
                **MESSAGES,
                extra_headers={"Llmtap-Cache-Enabled": "true", "Llmtap-Cache-Bucket-Max-Size": "0"},
            )
        assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert mock.request_count == 0


def test_a_bucket_size_in_other_digits_or_bytes_is_refused_too(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        for size in ("\uff13".encode(), b"\xff\xfe", b"3\x00"[:1] + b"\xe2\x80\x8b"):
            reply = httpx.post(
                proxy.url + "/v1/chat/completions",
                json=CHAT,
                headers=[
                    (b"authorization", b"Bearer sk-one"),
                    (b"helicone-cache-enabled", b"true"),
                    (b"helicone-cache-bucket-max-size", size),
                ],
            )
            assert reply.status_code == 400, size
            assert reply.json()["error"]["code"] == "invalid_cache_header"
        assert mock.request_count == 0


def test_bucket_sizes_1_and_20_and_padded_ones_are_accepted(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        for size in ("1", "20", "05"):
            assert (
                chat(proxy.url, {**ON, "Helicone-Cache-Bucket-Max-Size": size}).status_code == 200
            )


def test_a_huge_seed_is_hashed_not_stored(tmp_path: Path, mock: MockUpstream) -> None:
    seed = "s" * 60_000
    with cache_proxy(tmp_path, mock) as proxy:
        chat(proxy.url, {**ON, "Helicone-Cache-Seed": seed})
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        assert cache_status(chat(proxy.url, {**ON, "Helicone-Cache-Seed": seed}))[0] == "HIT"
        assert cache_status(chat(proxy.url, {**ON, "Helicone-Cache-Seed": seed[:-1]}))[0] == "MISS"
    assert seed.encode()[:1000] not in (tmp_path / "data" / "cache.db").read_bytes()


@pytest.mark.parametrize("value", ["maybe", "", "false", "0", "TRUE!", "yes please"])
def test_a_garbage_cache_enabled_value_means_off(
    tmp_path: Path, mock: MockUpstream, value: str
) -> None:
    with cache_proxy(tmp_path, mock) as proxy:
        for _ in range(2):
            reply = chat(proxy.url, {"Helicone-Cache-Enabled": value})
            assert reply.status_code == 200 and cache_status(reply) == (None, None)
        assert mock.request_count == 2 and proxy.metrics.cache_misses == 0


def test_garbage_ignore_keys_do_no_harm(tmp_path: Path, mock: MockUpstream) -> None:
    keys = ",".join(f"k{i}" for i in range(5000)) + ',,, ,\\u00e9,"x",messages'
    ignoring = {**ON, "Helicone-Cache-Ignore-Keys": keys}
    with cache_proxy(tmp_path, mock) as proxy:
        chat(proxy.url, ignoring)
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        # "messages" is ignored: another prompt is served the same answer, as asked
        other = {**CHAT, "messages": [{"role": "user", "content": "something else"}]}
        assert cache_status(chat(proxy.url, ignoring, other))[0] == "HIT"


def _post_raw(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        content=body,
        headers={"authorization": "Bearer sk-one", "content-type": "text/plain", **headers},
        timeout=10,
    )


def test_ignore_keys_on_a_body_that_is_not_json_keys_on_the_raw_body(
    tmp_path: Path, mock: MockUpstream
) -> None:
    ignoring = {**ON, "Helicone-Cache-Ignore-Keys": "user"}
    answer = b'{"ok": true}'
    with cache_proxy(tmp_path, mock) as proxy:
        for _ in range(2):
            mock.enqueue_reply(200, {"content-type": "application/json"}, answer)
        first = _post_raw(proxy.url, b"not json {", ignoring)
        assert (first.status_code, cache_status(first)[0]) == (200, "MISS")
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        again = _post_raw(proxy.url, b"not json {", ignoring)
        assert (again.content, cache_status(again)[0]) == (answer, "HIT")
        other = _post_raw(proxy.url, b"not json }", ignoring)
        assert cache_status(other)[0] == "MISS"
        # a JSON array: nothing to leave out either
        mock.enqueue_reply(200, {"content-type": "application/json"}, answer)
        assert cache_status(_post_raw(proxy.url, b'["user"]', ignoring))[0] == "MISS"
        assert mock.request_count == 3


def test_an_answer_cut_by_the_capture_limit_is_never_cached(
    tmp_path: Path, mock: MockUpstream
) -> None:
    long_reply = {"x-mock-chunks": "200"}
    with cache_proxy(tmp_path, mock, max_capture_bytes=256) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-one", max_retries=0)
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                **CHAT, extra_headers={**ON, **long_reply}
            )
            assert raw.headers["helicone-cache"] == "MISS"
            assert len(raw.parse().choices[0].message.content or "") > 256
            stream = client.chat.completions.create(
                **CHAT, stream=True, extra_headers={**ON, **long_reply}
            )
            assert len(list(stream)) > 100
        assert mock.request_count == 4 and proxy.metrics.cache_saves == 0


def test_an_answer_over_the_cache_size_limit_is_not_cached(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with cache_proxy(tmp_path, mock, cache_max_body_bytes=1500) as proxy:
        big = {**ON, "x-mock-chunks": "300"}
        assert cache_status(chat(proxy.url, big))[0] == "MISS"
        assert cache_status(chat(proxy.url, big))[0] == "MISS"
        assert proxy.metrics.cache_saves == 0
        small = {**ON, "x-mock-chunks": "2"}
        chat(proxy.url, small)
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        assert cache_status(chat(proxy.url, small))[0] == "HIT"


def test_a_stream_the_provider_cut_is_not_cached(tmp_path: Path, mock: MockUpstream) -> None:
    cut = {**ON, "x-mock-drop-after-chunks": "2"}
    with cache_proxy(tmp_path, mock) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-one", max_retries=0)
        for _ in range(2):
            with pytest.raises(openai.APIError):
                list(client.chat.completions.create(**CHAT, stream=True, extra_headers=cut))
        wait_for(lambda: proxy.metrics.upstream_errors == 2, timeout_s=5, what="both logged")
        assert mock.request_count == 2 and proxy.metrics.cache_saves == 0


def test_a_stream_the_client_left_is_not_cached(tmp_path: Path, mock: MockUpstream) -> None:
    slow = {**ON, "x-mock-chunk-delay-ms": "50", "x-mock-chunks": "20"}
    with cache_proxy(tmp_path, mock) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-one", max_retries=0)
        stream = client.chat.completions.create(**CHAT, stream=True, extra_headers=slow)
        next(iter(stream))
        stream.close()
        wait_for(lambda: proxy.metrics.client_disconnects == 1, timeout_s=5, what="the leave")
        assert cache_status(chat(proxy.url, slow, {**CHAT, "stream": True}))[0] == "MISS"
        assert proxy.metrics.cache_hits == 0
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="the whole one saved")


def test_an_omitted_response_is_not_written_to_the_cache_either(
    tmp_path: Path, mock: MockUpstream
) -> None:
    omitted = {**ON, "Helicone-Omit-Response": "true"}
    with cache_proxy(tmp_path, mock) as proxy:
        first = chat(proxy.url, omitted)
        assert cache_status(first)[0] == "MISS"
        wait_for(lambda: proxy.metrics.records_published >= 1, timeout_s=5, what="logged")
        assert cache_status(chat(proxy.url, omitted))[0] == "MISS"
        assert proxy.metrics.cache_saves == 0 and mock.request_count == 2
    assert first.json()["id"].encode() not in (tmp_path / "data" / "cache.db").read_bytes()


def test_a_provider_cannot_claim_its_answer_came_from_the_cache(
    tmp_path: Path, mock: MockUpstream
) -> None:
    spoofed = {
        "content-type": "application/json",
        "helicone-cache": "HIT",
        "llmtap-cache": "HIT",
        "helicone-cache-bucket-idx": "7",
    }
    with cache_proxy(tmp_path, mock) as proxy:
        mock.enqueue_reply(200, spoofed, b'{"ok": 1}')
        first = chat(proxy.url, ON)
        assert first.headers.get_list("helicone-cache") == ["MISS"]
        assert "helicone-cache-bucket-idx" not in first.headers
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        hit = chat(proxy.url, ON)
        assert hit.headers.get_list("helicone-cache") == ["HIT"]
        assert hit.headers.get_list("helicone-cache-bucket-idx") == ["0"]


def test_a_cache_url_that_is_not_redis_stops_the_proxy_at_start(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with pytest.raises(ConfigError, match="LLMTAP_CACHE_URL") as refused:  # noqa: SIM117
        with cache_proxy(tmp_path, mock, cache_url="memcached://user:s3cret@127.0.0.1:11211"):
            pass
    assert "s3cret" not in str(refused.value)


def test_a_redis_that_accepts_and_never_answers_costs_one_timeout(
    tmp_path: Path, mock: MockUpstream
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        with cache_proxy(tmp_path, mock, cache_url=url, cache_timeout_s=0.2) as proxy:
            replies = [chat(proxy.url, ON) for _ in range(5)]
            assert [r.status_code for r in replies] == [200] * 5
            assert proxy.metrics.cache_errors == 1 and proxy.metrics.cache_bypassed == 4


def test_a_corrupt_entry_is_never_served_and_the_call_goes_through(
    tmp_path: Path, mock: MockUpstream
) -> None:
    # memory off: every hit is read from the store
    with cache_proxy(tmp_path, mock, cache_memory_bytes=0) as proxy:
        chat(proxy.url, ON)
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        with sqlite3.connect(tmp_path / "data" / "cache.db") as db:
            assert db.execute("UPDATE cache_slots SET data = x'93c0ff01'").rowcount == 1
        reply = chat(proxy.url, ON)
        assert reply.status_code == 200 and reply.json()["object"] == "chat.completion"
        assert cache_status(reply) == (None, None)
        assert proxy.metrics.cache_errors == 1 and proxy.metrics.cache_hits == 0
        assert mock.request_count == 2
