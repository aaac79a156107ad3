"""Several delivery workers on one Postgres outbox (as several ``llmtap consume`` processes run
them): every delivery reaches the receiver exactly once — none is sent twice while its lease
holds — and the per-endpoint limit holds for each worker."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from llmtap.delivery.worker import DeliveryWorker, WorkerConfig, default_kinds
from llmtap.settings import Settings
from llmtap.stores.records import RecordsStore
from llmtap.stores.records.outbox import Delivery
from support.api_backend import postgres_schema
from support.probes import wait_for
from support.receiver import Received, Receiver

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)


@pytest.fixture
def records_url() -> Iterator[str]:
    with postgres_schema(PG_URL) as url:
        yield url


@pytest.mark.postgres
def test_three_workers_send_each_delivery_once(records_url: str) -> None:
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def slow_check(_r: Received) -> None:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.01)  # a receiver that takes a little while: sends overlap
        with lock:
            in_flight -= 1
        return None

    stores = [RecordsStore(records_url) for _ in range(3)]
    settings = Settings(outbox_allow_private_targets=True, outbox_poll_s=0.05)
    config = replace(WorkerConfig.from_settings(settings), endpoint_concurrency=2)
    workers = [DeliveryWorker(s.outbox, config, default_kinds(settings)) for s in stores]
    try:
        with Receiver(check=slow_check) as receiver:
            org = stores[0].default_org_id()
            hook, _ = stores[0].integrations.create_webhook(org, receiver.url + "/h", 100, {})
            keys = [f"call-{i:03d}" for i in range(150)]
            stores[0].outbox.enqueue(
                [], [Delivery(hook, org, k, b"{}", k) for k in keys], int(time.time() * 1000)
            )
            for w in workers:
                w.start()
            wait_for(
                lambda: len(receiver.received) >= len(keys), timeout_s=60, what="every delivery"
            )
            got = [r.headers["idempotency-key"] for r in receiver.received]
            assert sorted(got) == keys, "each delivery sent once, by one of the workers"
            assert all(w.stats.sends for w in workers), [w.stats for w in workers]
            assert most <= 3 * 2, "at most the per-endpoint limit per worker"
            wait_for(
                lambda: (
                    {d.status for d in stores[0].outbox.history(org, hook, 1000)} == {"delivered"}
                ),
                timeout_s=10,
                what="every delivery recorded",
            )
    finally:
        for w in workers:
            w.stop()
        for s in stores:
            s.close()
