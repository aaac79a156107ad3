"""The cache's rules as pure functions: what a call's headers ask for, the bucket rule every store
follows, and the body the key sees."""

from __future__ import annotations

import pytest

from llmtap.capture.tap import TapHeaders, split_headers
from llmtap.proxy.gateway.cache_key import keyed_body
from llmtap.proxy.gateway.cache_memory import REFRESH, MemoryCache
from llmtap.proxy.gateway.cache_replay import Prepared
from llmtap.proxy.gateway.cache_request import (
    DEFAULT_MAX_AGE_S,
    MAX_MAX_AGE_S,
    CacheHeaderError,
    CacheRequests,
    cache_request,
    max_age,
)
from llmtap.proxy.gateway.cache_store import CachedResponse, decide
from support.probes import wait_for


def test_enabled_reads_and_saves_and_each_direction_wins_over_it() -> None:
    assert cache_request({"cache-enabled": "true"}) is not None
    both = cache_request({"cache-enabled": "TRUE"})
    assert both is not None and (both.read, both.save) == (True, True)
    read = cache_request({"cache-read": "1"})
    assert read is not None and (read.read, read.save) == (True, False)
    no_save = cache_request({"cache-enabled": "on", "cache-save": "false"})
    assert no_save is not None and (no_save.read, no_save.save) == (True, False)
    assert cache_request({"cache-enabled": "false"}) is None
    assert cache_request({"cache-enabled": "true", "cache-read": "0", "cache-save": "no"}) is None
    assert cache_request({"retry-enabled": "true"}) is None


@pytest.mark.parametrize("size", ["0", "21", "-1", "abc", "", " ", "1e1", "\u0663", "+3"])
def test_bucket_sizes_outside_1_to_20_are_refused(size: str) -> None:
    with pytest.raises(CacheHeaderError):
        cache_request({"cache-enabled": "true", "cache-bucket-max-size": size})


def test_a_refused_bucket_size_is_quoted_short() -> None:
    with pytest.raises(CacheHeaderError) as raised:
        cache_request({"cache-enabled": "true", "cache-bucket-max-size": "x" * 10_000})
    assert len(str(raised.value)) < 150


def test_ignore_keys_are_trimmed_deduplicated_and_sorted() -> None:
    asked = cache_request({"cache-enabled": "true", "cache-ignore-keys": " b,a,, b ,"})
    assert asked is not None and asked.ignore_keys == ("a", "b")


@pytest.mark.parametrize(
    ("values", "seconds"),
    [
        ([], DEFAULT_MAX_AGE_S),
        ([b"max-age=60"], 60),
        ([b"public, MAX-AGE=60, s-maxage=5"], 5),
        ([b"max-age=60", b"s-maxage=7"], 7),
        ([b'max-age="30"'], 30),
        ([b"max-age=-5"], DEFAULT_MAX_AGE_S),
        ([b"max-age=1e9"], DEFAULT_MAX_AGE_S),
        ([b"max-age=" + b"9" * 500], MAX_MAX_AGE_S),
        ([b"no-store"], DEFAULT_MAX_AGE_S),
        ([b"max-age=0"], 0),
    ],
)
def test_max_age(values: list[bytes], seconds: int) -> None:
    assert max_age([(b"Cache-Control", v) for v in values]) == seconds


def test_the_first_n_calls_fill_then_hits_are_random() -> None:
    # empty bucket of 3, read+save: fill slot 0
    assert decide([], [], [0, 1, 2], True, True, 5) == ("fill", 0)
    # one filled, two free: still a miss that fills (the first n are misses)
    assert decide([0], [], [1, 2], True, True, 5) == ("fill", 1)
    # every slot claimed, none filled yet: wait
    assert decide([], [0, 1, 2], [], True, True, 5) == ("wait", 0)
    # full: a random filled slot
    assert decide([0, 1], [2], [], True, True, 3) == ("hit", 1)
    assert decide([0, 1, 2], [], [], True, True, 7) == ("hit", 1)


def test_one_direction_only() -> None:
    assert decide([], [], [0], True, False, 0) == ("miss", 0)  # read-only, nothing there
    assert decide([], [0], [], True, False, 0) == ("wait", 0)  # read-only, being filled
    assert decide([0], [], [1], True, False, 0) == ("hit", 0)  # read-only takes what is there
    assert decide([0], [], [], False, True, 0) == ("fill", 0)  # save-only refreshes a slot
    assert decide([0, 1], [], [], False, True, 3) == ("fill", 1)
    assert decide([], [], [0, 1], False, True, 3) == ("fill", 0)


def test_keyed_body() -> None:
    body = b'{"b": 1, "user": "u1", "a": [1, {"user": "kept"}]}'
    assert keyed_body(body, ()) == b"R" + body
    without = keyed_body(body, ("user",))
    assert without == keyed_body(b'{"a":[1,{"user":"kept"}],"user":"u2","b":1}', ("user",))
    assert without != keyed_body(b'{"a":[2],"b":1}', ("user",))
    assert keyed_body(b"not json", ("user",)) == b"Rnot json"
    assert keyed_body(b'["user"]', ("user",)) == b'R["user"]'
    assert keyed_body(b"", ("user",)) == b"R"
    # a raw body can never spell a parsed one
    parsed = keyed_body(b'{"user": 1}', ("user",))
    assert parsed == b"J{}"
    assert keyed_body(parsed, ("user",)) != parsed and keyed_body(parsed[1:], ()) != parsed


def _answer(text: bytes, idx: int = 0) -> Prepared:
    return Prepared(CachedResponse(200, b"OK", [], False, text), idx)


def test_memory_serves_a_full_bucket_only_and_stays_within_its_bytes() -> None:
    memory = MemoryCache(max_bytes=100, ttl_s=60)
    a = _answer(b"a")
    memory.add("k", a, 30)
    assert memory.get("k", 1, 0) is a
    assert memory.get("k", 2, 0) is None  # slot 1 of a bucket of 2 not seen yet: the store decides
    memory.add("k", _answer(b"b", 1), 30)
    served = [memory.get("k", 2, r) for r in range(4)]
    assert {(p.idx, p.answer.body) for p in filter(None, served)} == {(0, b"a"), (1, b"b")}
    memory.add("other", _answer(b"c"), 50)  # 110 bytes: the least recently used goes
    assert memory.get("k", 1, 0) is None and memory.get("other", 1, 0) is not None
    memory.add("huge", _answer(b"d"), 101)
    assert memory.get("huge", 1, 0) is None
    # the rendered head counts too
    assert MemoryCache.prepared_size(a, 30) == 30 + len(a.head_lines or b"") > 30


def test_memory_forgets_after_its_ttl() -> None:
    memory = MemoryCache(max_bytes=100, ttl_s=0.05, grace_s=0.05)
    memory.add("k", _answer(b"a"), 10)
    assert memory.get("k", 1, 0) is not None
    # past the ttl one call is told to ask the store; if no answer renews the bucket within
    # the grace, it is forgotten
    wait_for(lambda: memory.get("k", 1, 0) is REFRESH, timeout_s=5, what="refresh asked")
    wait_for(lambda: memory.get("k", 1, 0) is None, timeout_s=5, what="forgotten")
    assert not MemoryCache(max_bytes=0, ttl_s=1).enabled
    off = MemoryCache(max_bytes=100, ttl_s=0)
    off.add("k", _answer(b"a"), 10)
    assert off.get("k", 1, 0) is None


def test_memory_asks_one_caller_to_refresh_and_serves_the_others_meanwhile() -> None:
    memory = MemoryCache(max_bytes=100, ttl_s=0.05, grace_s=60)
    a = _answer(b"a")
    memory.add("k", a, 10)
    wait_for(lambda: memory.get("k", 1, 0) is REFRESH, timeout_s=5, what="refresh asked")
    assert [memory.get("k", 1, r) for r in range(5)] == [a] * 5  # one refresh at a time
    fresh = _answer(b"b")
    memory.add("k", fresh, 10)  # the refresh found an answer: a new bucket, a new ttl
    assert memory.get("k", 1, 0) is fresh
    wait_for(lambda: memory.get("k", 1, 0) is REFRESH, timeout_s=5, what="refresh asked")
    memory.forget("k")  # the refresh found none (a miss, a claim, a store failure)
    assert memory.get("k", 1, 0) is None
    memory.add("k", a, 10)
    assert memory.get("k", 1, 0) is a


def test_the_same_cache_headers_are_read_once_and_a_refused_set_every_time() -> None:
    requests = CacheRequests(size=2)
    first = requests.get({"cache-enabled": "true", "retry-enabled": "true"})
    assert first == cache_request({"cache-enabled": "true"})
    # other features do not make another set: the cache reads only its own headers
    assert requests.get({"cache-enabled": "true"}) is first
    seeded = requests.get({"cache-enabled": "true", "cache-seed": "s"})
    assert seeded is not None and seeded.seed == "s" and seeded is not first
    assert requests.get({"cache-read": "true"}) == cache_request({"cache-read": "true"})
    for _ in range(2):  # never remembered: refused each time
        with pytest.raises(CacheHeaderError):
            requests.get({"cache-enabled": "true", "cache-bucket-max-size": "99"})
    long_seed = {"cache-enabled": "true", "cache-seed": "s" * 600}
    assert requests.get(long_seed) is not requests.get(long_seed)  # too long to keep
    assert requests.get({"cache-enabled": "false"}) is None


def test_a_call_with_only_gateway_headers_gets_every_other_setting_at_its_default() -> None:
    """``split_headers``' short way for calls like most cache hits (only feature headers) gives
    what the long way gave; any other llmtap header, or a property, takes the long way."""
    headers = [
        (b"Authorization", b"Bearer sk-1"),
        (b"Helicone-Cache-Enabled", b"true"),
        (b"Llmtap-Retry-Num", b"2"),
    ]
    forward, tap = split_headers(headers, lambda: "id-1")
    assert forward == [(b"Authorization", b"Bearer sk-1")]
    assert tap == TapHeaders(
        request_id="id-1", features={"cache-enabled": "true", "retry-num": "2"}
    )
    _, with_user = split_headers([*headers, (b"Helicone-User-Id", b"u1")], lambda: "id-2")
    assert with_user.user_id == "u1" and with_user.features == tap.features
    _, with_property = split_headers([*headers, (b"Helicone-Property-A", b"b")], lambda: "id-3")
    assert with_property.properties == {"a": "b"} and with_property.features == tap.features
