"""A webhook whose endpoint is dead costs the delivery worker almost nothing while it stays dead,
and loses nothing: the worker builds payloads and outbox rows only for what one attempt sends (not
a whole window of them, again and again after each backoff), the other calls wait in the records
store behind the webhook's cursor, and once the endpoint answers every call is delivered.
Real sockets: a port that refuses, then a receiver on 127.0.0.1 on that port.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from llmtap.delivery.payloads import Links
from llmtap.delivery.webhook_feed import WebhookFeed
from llmtap.delivery.worker import DeliveryWorker, WorkerConfig, default_kinds
from llmtap.settings import Settings
from llmtap.stores.records import RecordsStore
from llmtap.stores.row import RequestRow
from support.probes import wait_for
from support.receiver import Receiver

CALLS = 120


class NoBodies:
    def get(self, key: str) -> bytes:
        raise KeyError(key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordsStore]:
    s = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    yield s
    s.close()


def call(org: str, request_id: str) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id=org,
        created_unix_ms=1_764_000_000_000.0,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
    )


def worker(store: RecordsStore, feed: WebhookFeed) -> DeliveryWorker:
    settings = Settings(
        outbox_retry_base_s=0.05,
        outbox_retry_max_s=0.2,
        outbox_poll_s=0.05,
        outbox_timeout_s=5,
        outbox_allow_private_targets=True,
    )
    config = replace(WorkerConfig.from_settings(settings), endpoint_concurrency=4)
    return DeliveryWorker(store.outbox, config, default_kinds(settings), feed=feed)


def test_a_dead_endpoint_holds_one_attempt_of_payloads_then_catches_up(
    store: RecordsStore,
) -> None:
    org = store.default_org_id()
    receiver = Receiver()  # not started: its port refuses connections
    hook, _ = store.integrations.create_webhook(org, receiver.url, 100, {})
    ids = [f"dead-{i:04d}" for i in range(CALLS)]
    store.write_batch([call(org, i) for i in ids])
    feed = WebhookFeed(store.outbox_tail, NoBodies(), Links("https://llmtap.example"), 10_000)  # type: ignore[arg-type]
    sender = worker(store, feed)
    sender.start()
    try:
        # several attempts, each after a backoff
        wait_for(lambda: sender.stats.failures >= 12, timeout_s=30, what="a dozen failed sends")
        held = store.outbox.history(org, hook, 1000)
        assert len(held) <= 4, (
            f"{len(held)} deliveries built for an endpoint that never answered: only what one"
            " attempt sends (4 at once) should be"
        )
        assert store.outbox.pending_counts(org) == {hook: CALLS}, "the rest wait in the log"
        assert sender.stats.sends == 0

        receiver.start()
        wait_for(
            lambda: {r.headers["idempotency-key"] for r in receiver.accepted()} == set(ids),
            timeout_s=60,
            what="every call delivered once the endpoint is back",
        )
        # the receiver has the last one before the worker records its answer
        wait_for(
            lambda: store.outbox.pending_counts(org) == {},
            timeout_s=10,
            what="every delivery recorded as delivered",
        )
    finally:
        sender.stop()
        receiver.stop()
