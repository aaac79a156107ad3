"""The webhook cursor (``stores/records/outbox_cursor.py``, ``outbox_tail.py`` and the worker's
``delivery/webhook_feed.py``), on SQLite and on a real Postgres server: a webhook is fed the calls
stored after it was created, each once however often a call is written again, a window at a time,
only the ones its filters and sample want, with the payload made from the stored row and its
bodies; on Postgres a call whose transaction commits late is never skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmtap.delivery.payloads import Links
from llmtap.delivery.webhook_feed import WebhookFeed
from llmtap.errors import StoreUnavailable
from llmtap.stores.records import RecordsStore
from llmtap.stores.records.engine import create_engine
from llmtap.stores.records.upsert import prepare
from llmtap.stores.row import RequestRow
from support.api_backend import postgres_schema
from support.probes import wait_for

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
NOW = 10_000


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


class Bodies:
    """A body store holding what the test put in it."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get(self, key: str) -> bytes:
        return self.objects[key]


def row(org: str, request_id: str, **fields: object) -> RequestRow:
    values: dict[str, object] = {
        "created_unix_ms": 1_764_000_000_000.0,
        "source": "proxy",
        "provider": "openai",
        "method": "POST",
        "target_url": "https://api.openai.com/v1/chat/completions",
        "path": "/v1/chat/completions",
        "status": 200,
        **fields,
    }
    return RequestRow(request_id=request_id, org_id=org, **values)  # type: ignore[arg-type]


def feeder(store: RecordsStore, bodies: Bodies | None = None) -> WebhookFeed:
    return WebhookFeed(
        store.outbox_tail,
        bodies or Bodies(),
        Links("https://llmtap.example"),
        10_000,  # type: ignore[arg-type]
    )


def feed_once(feed: WebhookFeed, hook: str, window: int = 1000) -> int:
    tailing = feed.tailing(NOW, 64)
    return feed.feed(tailing[hook], window, NOW) if hook in tailing else 0


def feed_all(store: RecordsStore, feed: WebhookFeed, hook: str, window: int = 1000) -> int:
    """Feed until the webhook has nothing more to read or no room; how many were added. On
    Postgres a call is read once no older transaction of the server is running, and other
    sessions on a shared server may hold one for a moment: wait for that, never skip it."""
    added = 0

    def done() -> bool:
        nonlocal added
        added += feed_once(feed, hook, window)
        pending = store.outbox_tail.pending(hook)
        return hook not in feed.tailing(NOW, 64) or pending > window // 2

    wait_for(done, timeout_s=10, what="the webhook fed every settled call")
    return added


def sent_ids(store: RecordsStore, org: str, hook: str) -> list[str]:
    return sorted(d.request_id or "" for d in store.outbox.history(org, hook, 1000))


def test_a_webhook_is_fed_each_call_stored_after_it_once(store: RecordsStore) -> None:
    org = store.default_org_id()
    other = store.create_org("other")
    store.write_batch([row(org, "before")])
    hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
    store.write_batch([row(org, f"a{i}") for i in range(5)] + [row(other, "theirs")])
    store.write_batch([row(org, f"a{i}") for i in range(5, 10)])
    wait_for(
        lambda: store.outbox.pending_counts(org) == {hook: 10},
        timeout_s=10,
        what="the calls after its cursor counted as pending",
    )
    feed = feeder(store)
    assert feed_all(store, feed, hook) == 10
    assert sent_ids(store, org, hook) == sorted(f"a{i}" for i in range(10))
    # written again (a redelivered batch, a replay): the same calls, nothing more to send
    store.write_batch([row(org, f"a{i}") for i in range(10)])
    assert feed.tailing(NOW, 64) == {}
    assert feed_all(store, feed, hook) == 0
    assert store.outbox.pending_counts(org) == {hook: 10}


def test_a_webhook_holds_at_most_its_window_in_the_outbox(store: RecordsStore) -> None:
    """An endpoint that is down keeps a window of deliveries pending; the rest of its calls wait
    in the log until those are done."""
    org = store.default_org_id()
    hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
    store.write_batch([row(org, f"c{i:02d}") for i in range(10)])
    feed = feeder(store)
    assert feed_all(store, feed, hook, window=4) == 4
    assert feed_all(store, feed, hook, window=4) == 0, "four are pending: no room"
    assert len(store.outbox.history(org, hook, 100)) == 4
    claimed = store.outbox.claim(hook, NOW, 10, 60_000)
    store.outbox.succeeded(hook, [c.id for c in claimed], NOW, 200)
    assert feed_all(store, feed, hook, window=4) == 4
    assert [c.dedup_key for c in claimed] == [f"c{i:02d}" for i in range(4)], "in stored order"


def test_filters_sample_and_payload(store: RecordsStore) -> None:
    org = store.default_org_id()
    bodies = Bodies()
    bodies.objects["req-key"] = b'{"messages": []}'
    bodies.objects["big-key"] = b"x" * 20_000
    prod, _ = store.integrations.create_webhook(org, "https://example.com/p", 100, {"Env": "prod"})
    none, _ = store.integrations.create_webhook(org, "https://example.com/n", 0, {})
    store.write_batch(
        [
            row(
                org,
                "wanted",
                properties={"env": "prod"},
                request_body_key="req-key",
                response_body_key="big-key",
            ),
            row(org, "unwanted", properties={"env": "dev"}),
        ]
    )
    feed = feeder(store, bodies)
    assert feed_all(store, feed, prod) == 1
    assert feed_all(store, feed, none) == 0
    assert feed.tailing(NOW, 64) == {}, "both cursors moved past every call"
    (claimed,) = store.outbox.claim(prod, NOW, 10, 60_000)
    payload = json.loads(claimed.body)
    assert payload["request_id"] == "wanted" and claimed.dedup_key == "wanted"
    assert payload["request_body"] == '{"messages": []}'
    assert payload["llmtap"]["response_body_truncated"] is True
    assert "/v1/requests/wanted?bodies=true" in payload["response_body"]
    assert store.outbox.history(org, none, 10) == []


def test_a_paused_or_backing_off_webhook_is_not_fed(store: RecordsStore) -> None:
    org = store.default_org_id()
    hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
    store.write_batch([row(org, "r0")])
    with store._writer.begin() as conn:
        conn.execute(sa.text("UPDATE outbox_targets SET retry_at_ms = :t"), {"t": NOW + 1})
    feed = feeder(store)
    assert feed.tailing(NOW, 64) == {}
    assert hook in feed.tailing(NOW + 1, 64)


@pytest.mark.postgres
def test_a_call_committed_late_is_not_skipped_on_postgres(tmp_path: Path) -> None:
    """Two consumers: the first takes its transaction id, the second stores a call and commits,
    then the first commits. A cursor by commit order of ids would have moved past the first's
    call; the horizon holds the cursor until no older transaction is running."""
    with postgres_schema(PG_URL) as scoped:
        store = RecordsStore(scoped)
        try:
            org = store.default_org_id()
            hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
            feed = feeder(store)
            engine = create_engine(scoped)
            try:
                with engine.connect() as slow:
                    first = slow.begin()
                    # stored, not committed: its transaction has its id
                    prepare(engine).execute(slow, [row(org, "first")])
                    store.write_batch([row(org, "second")])
                    assert feed_once(feed, hook) == 0, "held behind the running one"
                    first.commit()
            finally:
                engine.dispose()
            assert feed_all(store, feed, hook) == 2
            assert sent_ids(store, org, hook) == ["first", "second"]
        finally:
            store.close()


class BrokenBodies(Bodies):
    """A body store that is away for one key and returns garbage the payload cannot take for
    another."""

    def get(self, key: str) -> bytes:
        if key == "away":
            raise StoreUnavailable("body store away")
        if key == "bug":
            raise ValueError("a bug")
        return super().get(key)


def test_a_body_store_outage_holds_the_cursor_and_a_bug_skips_one_call(
    store: RecordsStore,
) -> None:
    org = store.default_org_id()
    hook, _ = store.integrations.create_webhook(org, "https://example.com/h", 100, {})
    store.write_batch([row(org, "a", request_body_key="away")])
    feed = feeder(store, BrokenBodies())
    wait_for(lambda: hook in feed.tailing(NOW, 64), timeout_s=10, what="the call settled")
    with pytest.raises(StoreUnavailable):
        feed_once(feed, hook)
    assert hook in feed.tailing(NOW, 64), "not moved: the call is fed once the store is back"

    with store._writer.begin() as conn:
        conn.execute(sa.text("DELETE FROM requests"))
    store.write_batch([row(org, "b", request_body_key="bug"), row(org, "c")])
    assert feed_all(store, feed, hook) == 1
    assert sent_ids(store, org, hook) == ["c"]
    assert feed.skipped == 1


def test_the_cursor_survives_a_restart(url: str) -> None:
    """A consumer process that stops and another that starts (a new store, a new feed) go on
    where the first left off: nothing fed twice, nothing skipped."""
    first = RecordsStore(url)
    try:
        org = first.default_org_id()
        hook, _ = first.integrations.create_webhook(org, "https://example.com/h", 100, {})
        first.write_batch([row(org, f"c{i:02d}") for i in range(8)])
        assert feed_all(first, feeder(first), hook, window=4) == 4
    finally:
        first.close()
    second = RecordsStore(url)
    try:
        feed = feeder(second)
        assert feed_all(second, feed, hook, window=4) == 0, "its four are still pending"
        claimed = second.outbox.claim(hook, NOW, 10, 60_000)
        second.outbox.succeeded(hook, [c.id for c in claimed], NOW, 200)
        assert feed_all(second, feed, hook, window=4) == 4
        assert sent_ids(second, org, hook) == [f"c{i:02d}" for i in range(8)]
    finally:
        second.close()
