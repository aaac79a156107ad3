"""The outbox contract (``stores/records/outbox.py``), on SQLite and on a real Postgres server:
enqueueing is idempotent, a delivery is claimed by one worker at a time (several processes'
workers on Postgres), failures back off, age out and pause, history is per organization.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.stores.records import RecordsStore
from llmtap.stores.records.outbox import Delivery, RetryPolicy, TargetSpec
from support.api_backend import postgres_schema

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
POLICY = RetryPolicy(
    base_ms=1000, max_ms=8000, max_age_ms=60_000, pause_after_failures=3, pause_after_ms=5000
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    with postgres_schema(PG_URL) as scoped:
        yield scoped


@pytest.fixture
def store(url: str) -> Iterator[RecordsStore]:
    s = RecordsStore(url)
    yield s
    s.close()


def deliveries(org: str, target: str, n: int, start: int = 0) -> list[Delivery]:
    return [Delivery(target, org, f"r{i}", b"{}", f"r{i}") for i in range(start, start + n)]


def test_the_same_batch_enqueued_three_times_holds_each_delivery_once(
    store: RecordsStore,
) -> None:
    org = store.default_org_id()
    hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
    ph = TargetSpec("ph_1", org, "posthog", "https://ph.example", "phc_k")
    for _ in range(3):
        store.outbox.enqueue([ph], deliveries(org, hook, 5) + deliveries(org, "ph_1", 2), 1000)
    assert len(store.outbox.history(org, hook, 100)) == 5
    assert len(store.outbox.history(org, "ph_1", 100)) == 2
    assert store.outbox.pending_counts(org) == {hook: 5, "ph_1": 2}


def test_deliveries_of_a_deleted_webhook_are_dropped_not_refused(store: RecordsStore) -> None:
    org = store.default_org_id()
    kept, _ = store.integrations.create_webhook(org, "https://example.com/a", 100, {})
    gone, _ = store.integrations.create_webhook(org, "https://example.com/b", 100, {})
    assert store.integrations.delete_webhook(org, gone)
    store.outbox.enqueue([], deliveries(org, kept, 1) + deliveries(org, gone, 1), 1000)
    assert store.outbox.pending_counts(org) == {kept: 1}


def test_a_claim_takes_at_most_its_limit_oldest_first(store: RecordsStore) -> None:
    org = store.default_org_id()
    hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
    store.outbox.enqueue([], deliveries(org, hook, 4), 1000)
    store.outbox.enqueue([], deliveries(org, hook, 6, start=4), 1001)
    first = store.outbox.claim(hook, 2000, 3, 60_000)
    # the longest-due first (r0-r3 were due a millisecond before r4-r9)
    assert len(first) == 3 and {c.dedup_key for c in first} <= {"r0", "r1", "r2", "r3"}
    assert len(store.outbox.claim(hook, 2000, 3, 60_000)) == 3
    assert len(store.outbox.claim(hook, 2000, 30, 60_000)) == 4
    assert store.outbox.claim(hook, 2000, 30, 60_000) == []


def test_claims_never_overlap_across_workers(url: str) -> None:
    """Four stores (four connection pools, as four consumer processes have) claim the same
    target at once: every delivery is claimed exactly once."""
    stores = [RecordsStore(url) for _ in range(4)]
    try:
        org = stores[0].default_org_id()
        hook, _ = stores[0].integrations.create_webhook(org, "https://example.com/h", 100, {})
        stores[0].outbox.enqueue([], deliveries(org, hook, 200), 1000)
        got: list[list[str]] = [[] for _ in stores]
        errors: list[BaseException] = []
        start = threading.Barrier(len(stores))

        def claim(i: int) -> None:
            try:
                start.wait(10)
                while batch := stores[i].outbox.claim(hook, 2000, 7, 60_000):
                    got[i].extend(c.dedup_key for c in batch)
            except BaseException as exc:  # noqa: BLE001 -- reported below
                errors.append(exc)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        everything = [key for keys in got for key in keys]
        assert sorted(everything) == sorted(f"r{i}" for i in range(200))
        # a lease that lapsed is claimable again (a worker that died mid-send)
        assert len(stores[1].outbox.claim(hook, 2000 + 60_000, 500, 60_000)) == 200
    finally:
        for s in stores:
            s.close()


def test_a_failure_backs_off_the_delivery_and_the_endpoint_then_pauses_it(
    store: RecordsStore,
) -> None:
    org = store.default_org_id()
    hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
    store.outbox.enqueue([], deliveries(org, hook, 1), 1000)
    now = 1000
    for failure in range(1, 4):
        assert [t.id for t in store.outbox.due_targets(now, 10)] == [hook]
        (claimed,) = store.outbox.claim(hook, now, 10, 60_000)
        store.outbox.failed(hook, [claimed], now, "answered 503", 503, POLICY)
        target = store.outbox.target(org, hook)
        assert target is not None and target.consecutive_failures == failure
        assert target.retry_at_ms == now + POLICY.backoff_ms(failure)
        assert store.outbox.due_targets(now + 1, 10) == [], "the endpoint backs off"
        now = target.retry_at_ms
    # three failures, but within 5 s: not paused yet
    target = store.outbox.target(org, hook)
    assert target is not None and not target.paused
    now += 5000
    (claimed,) = store.outbox.claim(hook, now, 10, 60_000)
    store.outbox.failed(hook, [claimed], now, "answered 503", 503, POLICY)
    target = store.outbox.target(org, hook)
    assert target is not None and target.paused
    assert store.outbox.due_targets(now + 10**9, 10) == [], "a paused endpoint gets nothing"

    assert store.outbox.resume(org, hook, now)
    (claimed,) = store.outbox.claim(hook, now, 10, 60_000)
    store.outbox.succeeded(hook, [claimed.id], now, 200)
    (info,) = store.outbox.history(org, hook, 10)
    assert (info.status, info.attempts, info.last_status) == ("delivered", 5, 200)


def test_a_delivery_failing_past_its_age_is_given_up(store: RecordsStore) -> None:
    org = store.default_org_id()
    hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
    store.outbox.enqueue([], deliveries(org, hook, 1), 0)
    (claimed,) = store.outbox.claim(hook, 61_000, 10, 60_000)
    store.outbox.failed(hook, [claimed], 61_000, "connection failed: refused", None, POLICY)
    (info,) = store.outbox.history(org, hook, 10)
    assert (info.status, info.next_attempt_ms, info.done_ms) == ("failed", None, 61_000)
    assert store.outbox.claim(hook, 10**9, 10, 60_000) == []
    assert store.outbox.sweep(61_001) == 1
    assert store.outbox.history(org, hook, 10) == []


def test_history_and_resume_are_per_organization(store: RecordsStore) -> None:
    org_a = store.create_org("a")
    org_b = store.create_org("b")
    hook, _ = store.integrations.create_webhook(org_a, "https://example.com/h", 100, {})
    store.outbox.enqueue([], deliveries(org_a, hook, 2), 1000)
    assert store.outbox.history(org_b, hook, 10) == []
    assert store.outbox.target(org_b, hook) is None
    assert not store.outbox.resume(org_b, hook, 1000)
    assert not store.integrations.delete_webhook(org_b, hook)
    assert len(store.outbox.history(org_a, hook, 10)) == 2
