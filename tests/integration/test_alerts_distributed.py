"""Alerts in the distributed topology: a Postgres records store whose metrics are computed there
(``records://``), and two evaluators — two consumer processes' worth, each with its own
engines — racing on every tick. Each tick one of them evaluates the rule (the claim), the
episode fires once and resolves once, and the outbox's real worker delivers exactly that, signed.

The evaluators share a clock the test moves, so "the same tick" is exact, not a timing hope.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmtap.alerts.evaluator import AlertEvaluator, EvaluatorConfig
from llmtap.delivery.worker import DeliveryWorker, WorkerConfig, default_kinds
from llmtap.settings import Settings
from llmtap.stores.factory import open_records_store
from llmtap.stores.records.analytics import RecordsAnalytics
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend, postgres_schema
from support.probes import wait_for
from support.receiver import Receiver

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
INTERVAL_S = 10.0


def row(org: str, created_ms: float, status: int, team: str = "core") -> RequestRow:
    return RequestRow(
        request_id=str(uuid.uuid4()),
        org_id=org,
        created_unix_ms=created_ms,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=status,
        model="gpt-4o-mini",
        endpoint="chat.completions",
        latency_ms=100.0,
        properties={"team": team},
    )


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with (
        postgres_schema(PG_URL) as url,
        ApiBackend(tmp_path / "data", records_url=url, outbox_allow_private_targets=True) as b,
    ):
        yield b


class Consumer:
    """What one consumer process holds for alerts: its own records store and metrics reader."""

    def __init__(self, url: str, clock: list[float]) -> None:
        self.records: RecordsStore = open_records_store(url)
        self.reader = RecordsAnalytics(url)
        settings = Settings(alerts_eval_interval_s=INTERVAL_S, alerts_min_window_s=1)
        self.evaluator = AlertEvaluator(
            self.records.alerts,
            self.reader,
            EvaluatorConfig.from_settings(settings),
            clock=lambda: clock[0],
        )

    def close(self) -> None:
        self.reader.close()
        self.records.close()


def tick(consumers: list[Consumer]) -> int:
    """Both evaluators run a round at the same moment; how many rules were evaluated."""
    start = threading.Barrier(len(consumers))
    done = [0] * len(consumers)

    def run(i: int) -> None:
        start.wait()
        done[i] = consumers[i].evaluator.run_once()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(consumers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sum(done)


def test_two_evaluators_evaluate_each_tick_once_and_fire_once(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    url = backend.settings.records_url
    clock = [time.time()]
    with (
        Receiver() as receiver,
        httpx.Client(
            base_url=backend.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as api,
    ):
        created = api.post(
            "/v1/alerts",
            json={
                "url": receiver.url + "/alert",
                "metric": "error_rate",
                "threshold": 0.5,
                "window_s": 60,
                "min_requests": 3,
            },
        )
        assert created.status_code == 201, created.text
        rule = created.json()
        consumers = [Consumer(url, clock), Consumer(url, clock)]
        try:
            now_ms = clock[0] * 1000
            backend.write([row(org, now_ms - 5000 + i, 200) for i in range(4)])
            assert tick(consumers) == 1, "one evaluator per tick"
            assert api.get(f"/v1/alerts/{rule['id']}/history").json()["data"] == []

            backend.write([row(org, now_ms - 1000 + i, 500) for i in range(10)])
            evaluated = 0
            for _ in range(5):  # failing through five ticks
                clock[0] += INTERVAL_S
                evaluated += tick(consumers)
            assert evaluated == 5, "each tick evaluated once, by one of the two"
            history = api.get(f"/v1/alerts/{rule['id']}/history").json()["data"]
            assert [e["state"] for e in history] == ["firing"]
            assert history[0]["value"] == pytest.approx(10 / 14)

            clock[0] += 70  # the failures leave the window: no calls, nothing known, still open
            assert tick(consumers) == 1
            history = api.get(f"/v1/alerts/{rule['id']}/history").json()["data"]
            assert [e["state"] for e in history] == ["firing"]
            now_ms = clock[0] * 1000  # healthy calls: now it is over
            backend.write([row(org, now_ms - 1000 + i, 200) for i in range(3)])
            clock[0] += INTERVAL_S
            assert tick(consumers) == 1
            history = api.get(f"/v1/alerts/{rule['id']}/history").json()["data"]
            assert [e["state"] for e in history] == ["resolved"]
            fired = sum(c.evaluator.stats.fired for c in consumers)
            resolved = sum(c.evaluator.stats.resolved for c in consumers)
            assert (fired, resolved) == (1, 1)
        finally:
            for c in consumers:
                c.close()

        settings = Settings(outbox_poll_s=0.05, outbox_allow_private_targets=True)
        # the deliveries were enqueued at the evaluators' (moved) time: the worker shares it
        worker = DeliveryWorker(
            backend.records.outbox,
            WorkerConfig.from_settings(settings),
            default_kinds(settings),
            clock=lambda: clock[0],
        )
        worker.start()
        try:
            wait_for(lambda: len(receiver.accepted()) >= 2, timeout_s=15, what="two deliveries")
        finally:
            worker.stop()
        # sent by up to LLMTAP_OUTBOX_ENDPOINT_CONCURRENCY requests at once: in either order
        statuses = [r.json()["status"] for r in receiver.accepted()]  # type: ignore[index]
        assert sorted(statuses) == ["firing", "resolved"]


def test_a_group_value_of_any_length_fires_with_a_bounded_message(backend: ApiBackend) -> None:
    """A caller chooses its property values: a 5,000-character one is a group like any other,
    and the message quotes only the start of it."""
    org, key = backend.new_org_key("acme")
    clock = [time.time()]
    long_team = "<!channel>" + "t" * 5000
    with httpx.Client(
        base_url=backend.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as api:
        rule = api.post(
            "/v1/alerts",
            json={
                "url": "https://hooks.slack.com/services/T/B/x",
                "metric": "error_rate",
                "threshold": 0.5,
                "window_s": 60,
                "min_requests": 2,
                "group_by": "property:team",
            },
        ).json()
        now_ms = clock[0] * 1000
        backend.write([row(org, now_ms - 1000 + i, 500, team=long_team) for i in range(3)])
        backend.write([row(org, now_ms - 1000 + i, 200, team="fine") for i in range(3)])
        consumer = Consumer(backend.settings.records_url, clock)
        try:
            assert consumer.evaluator.run_once() == 1
        finally:
            consumer.close()
        (episode,) = api.get(f"/v1/alerts/{rule['id']}/history").json()["data"]
        assert episode["group"] == long_team and episode["state"] == "firing"
    (delivery,) = backend.records.outbox.history(org, rule["id"], 10)
    import json

    import sqlalchemy as sa

    from llmtap.stores.records.schema import outbox

    with backend.records._engine.connect() as conn:
        body = conn.execute(sa.select(outbox.c.body).where(outbox.c.id == delivery.id)).scalar_one()
    doc = json.loads(body)
    assert len(doc["text"]) < 600 and "&lt;!channel&gt;" in doc["text"]
    assert "<!channel>" not in json.dumps(doc)
