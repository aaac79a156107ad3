"""The embedded rate-limit store, with the clock in the test's hands: fixed windows that start at
a bucket's first charge, all-or-nothing checks over several buckets, and charges after the call."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from llmtap.proxy.gateway.ratelimit_sqlite import SqliteLimiterStore, _Job
from llmtap.proxy.gateway.ratelimit_store import BucketCheck

T0 = 1_800_000_000_000


def _check(key: str, limit: int, need: int = 1, take: int = 1) -> BucketCheck:
    return BucketCheck(key=key, limit=limit, window_ms=60_000, need=need, take=take)


def test_a_window_counts_from_its_first_charge_and_starts_afresh_when_it_ends(
    tmp_path: Path,
) -> None:
    store = SqliteLimiterStore(tmp_path / "rl.db")
    try:
        assert store.acquire_now([_check("a", 2)], T0).allowed
        second = store.acquire_now([_check("a", 2)], T0 + 10_000)
        assert second.allowed and second.states[0].used == 2
        assert second.states[0].reset_ms == 50_000
        assert not store.acquire_now([_check("a", 2)], T0 + 59_999).allowed
        fresh = store.acquire_now([_check("a", 2)], T0 + 60_000)
        assert fresh.allowed and fresh.states[0].used == 1 and fresh.states[0].reset_ms == 60_000
    finally:
        store.close()


def test_a_check_over_several_buckets_charges_all_or_none(tmp_path: Path) -> None:
    store = SqliteLimiterStore(tmp_path / "rl.db")
    try:
        assert store.acquire_now([_check("key", 1)], T0).allowed
        refused = store.acquire_now([_check("org", 10), _check("key", 1)], T0)
        assert not refused.allowed
        # the roomy bucket was not charged for the refused call
        assert store.acquire_now([_check("org", 10, take=0)], T0).states[0].used == 0
    finally:
        store.close()


def test_a_cents_check_needs_budget_left_and_the_charge_comes_after(tmp_path: Path) -> None:
    store = SqliteLimiterStore(tmp_path / "rl.db")
    try:
        cents = _check("c", 100, need=1, take=0)
        assert store.acquire_now([cents], T0).allowed
        store.run_batch([_charge("c", 150)], T0 + 1)  # the call cost more than was left
        refused = store.acquire_now([cents], T0 + 2)
        assert not refused.allowed and refused.states[0].used == 150
    finally:
        store.close()


def _charge(key: str, amount: int) -> _Job:
    return _Job(None, key, amount, 60_000, None, None)


def test_two_stores_on_one_file_one_on_its_thread_hand_out_a_quota_exactly(
    tmp_path: Path,
) -> None:
    """What two proxy processes do: here two stores on one file, each driven by its own event
    loop in its own thread, one checking on its loop and one on its store thread."""
    stores = [SqliteLimiterStore(tmp_path / "rl.db"), SqliteLimiterStore(tmp_path / "rl.db")]
    stores[1].inline = False
    allowed: list[int] = []

    def drive(store: SqliteLimiterStore) -> None:
        async def burst() -> None:
            store.start()
            decisions = await asyncio.gather(
                *(store.acquire([_check("q", 50)]) for _ in range(100))
            )
            allowed.append(sum(d.allowed for d in decisions))
            await store.aclose()

        asyncio.run(burst())

    threads = [threading.Thread(target=drive, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(allowed) == 50 and len(allowed) == 2
