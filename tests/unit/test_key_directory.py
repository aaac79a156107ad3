"""The key directory's one rule, against a real records store: every answer (an organization, or
none) is trusted for ``ttl_s`` and no longer, so a revoked key stops working within ``ttl_s``; a
failed lookup is not remembered; the event loop's lookup never waits on a remote store; and the
directory is safe to share between threads. Time is an injected clock: no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.errors import StoreUnavailable
from llmtap.keys import KeyGrant, hash_key
from llmtap.keys.directory import PENDING, KeyDirectory
from llmtap.stores.records.key_table import KeyTable
from llmtap.stores.records.store import RecordsStore
from support.probes import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """The store's lookup, counted; ``fail`` makes it raise like an unreachable store."""

    def __init__(self, store: RecordsStore) -> None:
        self.store = store
        self.calls: list[str] = []
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, key_hash: str) -> str | None:
        with self._lock:
            self.calls.append(key_hash)
        if self.fail:
            raise StoreUnavailable("records store unavailable (resolve key): test")
        return self.store.org_for_key_hash(key_hash)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordsStore]:
    opened = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    yield opened
    opened.close()


def test_a_revoked_key_resolves_until_its_answer_is_ttl_old_then_never(
    store: RecordsStore,
) -> None:
    org = store.create_org("acme")
    key_id, key = store.create_key(org, "k")
    clock = Clock()
    keys = KeyDirectory(store.org_for_key_hash, ttl_s=5.0, clock=clock)
    assert keys.org_for_key_hash(hash_key(key)) == org
    store.revoke_key(key_id)
    clock.now += 4.9
    assert keys.org_for_key_hash(hash_key(key)) == org  # the cached answer, at most ttl_s old
    assert keys.org_nowait(hash_key(key)) == org
    clock.now += 0.2
    assert keys.org_for_key_hash(hash_key(key)) is None
    assert keys.org_nowait(hash_key(key)) is None


def test_unknown_keys_are_cached_too_and_asked_again_after_ttl(store: RecordsStore) -> None:
    lookups = Counting(store)
    clock = Clock()
    keys = KeyDirectory(lookups, ttl_s=5.0, clock=clock)
    bogus = hash_key("sk-llmtap-nobody")
    for _ in range(5):
        assert keys.org_for_key_hash(bogus) is None
        assert keys.org_nowait(bogus) is None
    assert lookups.calls == [bogus]  # a burst of calls with a bogus key costs one lookup
    clock.now += 5.1
    assert keys.org_for_key_hash(bogus) is None
    assert lookups.calls == [bogus, bogus]


def test_a_new_key_works_at_once(store: RecordsStore) -> None:
    org = store.create_org("acme")
    keys = KeyDirectory(store.org_for_key_hash, ttl_s=5.0, clock=Clock())
    assert keys.org_for_key_hash(hash_key("sk-llmtap-nobody")) is None
    _, key = store.create_key(org, "fresh")
    assert keys.org_for_key_hash(hash_key(key)) == org


def test_a_failed_lookup_is_raised_and_not_remembered(store: RecordsStore) -> None:
    org = store.create_org("acme")
    _, key = store.create_key(org, "k")
    lookups = Counting(store)
    keys = KeyDirectory(lookups, ttl_s=5.0, clock=Clock())
    lookups.fail = True
    with pytest.raises(StoreUnavailable):
        keys.org_for_key_hash(hash_key(key))
    assert keys.org_nowait(hash_key(key)) is PENDING  # inline: the loop lets the call through
    lookups.fail = False
    assert keys.org_for_key_hash(hash_key(key)) == org


def test_the_loop_never_waits_on_a_remote_store(store: RecordsStore) -> None:
    """Not ``inline`` (Postgres): a miss is answered PENDING at once and looked up on a thread;
    the loop sees the answer once it is in."""
    org = store.create_org("acme")
    _, key = store.create_key(org, "k")
    release = threading.Event()
    asked: list[str] = []

    def slow(key_hash: str) -> str | None:
        asked.append(key_hash)
        release.wait(10.0)
        return store.org_for_key_hash(key_hash)

    keys = KeyDirectory(slow, ttl_s=5.0, inline=False, clock=Clock())
    try:
        for _ in range(3):
            assert keys.org_nowait(hash_key(key)) is PENDING
            assert keys.org_nowait(hash_key("sk-llmtap-nobody")) is PENDING
        release.set()
        wait_for(lambda: keys.org_nowait(hash_key(key)) == org, what="the key's organization")
        wait_for(lambda: keys.org_nowait(hash_key("sk-llmtap-nobody")) is None, what="unknown")
        assert sorted(asked) == sorted([hash_key(key), hash_key("sk-llmtap-nobody")])
    finally:
        keys.close()


def test_threads_sharing_one_directory_get_right_answers_and_one_lookup_per_key(
    store: RecordsStore,
) -> None:
    orgs = [store.create_org(f"org-{i}") for i in range(4)]
    hashes = {hash_key(store.create_key(org, "k")[1]): org for org in orgs}
    hashes.update({hash_key(f"sk-llmtap-bogus-{i}"): None for i in range(4)})
    lookups = Counting(store)
    keys = KeyDirectory(lookups, ttl_s=5.0, clock=Clock())
    for key_hash in hashes:  # warm: from here on every answer comes from the cache
        keys.org_for_key_hash(key_hash)
    wrong: list[tuple[str, str | None]] = []
    start = threading.Barrier(8)

    def hammer(seed: int) -> None:
        start.wait(10.0)
        for i in range(400):
            key_hash = list(hashes)[(seed + i) % len(hashes)]
            found = keys.org_for_key_hash(key_hash) if i % 2 else keys.org_nowait(key_hash)
            if found != hashes[key_hash]:
                wrong.append((key_hash, found if isinstance(found, str | None) else "pending"))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert wrong == []
    assert sorted(lookups.calls) == sorted(hashes)


def test_a_remote_keys_expired_answer_is_given_while_it_is_refreshed(
    store: RecordsStore, tmp_path: Path
) -> None:
    """A key's rate limit must not lapse for a call every ``ttl_s`` (the answer used to be
    PENDING, i.e. unchecked, until the background refresh came back)."""
    org = store.create_org("stale")
    _, key = store.create_key(org, "k", "10;w=60;u=request")
    release = threading.Event()
    refreshes: list[str] = []
    table = KeyTable(f"sqlite:///{tmp_path / 'records.db'}")

    def slow(key_hash: str) -> KeyGrant | None:
        if refreshes:
            release.wait(10.0)
        refreshes.append(key_hash)
        return table.grant_for_key_hash(key_hash)

    clock = Clock()
    keys = KeyDirectory(slow, ttl_s=5.0, inline=False, clock=clock)
    try:
        wait_for(lambda: isinstance(keys.grant_nowait(hash_key(key)), KeyGrant), what="the key")
        clock.now += 6.0  # expired: a refresh starts, and stays blocked until released
        for _ in range(3):
            assert keys.grant_nowait(hash_key(key)) == KeyGrant(org, "10;w=60;u=request")
        release.set()
        wait_for(lambda: len(refreshes) == 2, what="one refresh")
    finally:
        release.set()
        keys.close()
        table.close()
