"""The runner's enqueue step: deliveries go into the outbox only after every sink took the
batch, once per call however often the batch is redelivered, from the row as stored; an outbox
outage holds the batch like a store outage (never a dead letter, never a lost delivery)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from test_consumer_runner import Env, chat_body, drain, env, make_record

from llmtap.consumer.chain import build_chain
from llmtap.consumer.runner import BatchRunner, Outbox, RunnerConfig
from llmtap.errors import StoreUnavailable
from llmtap.stores.records.outbox import Delivery, TargetSpec
from support.probes import wait_for

__all__ = ["env"]  # the fixture, shared with the runner's own tests


def runner(env: Env, outbox: Outbox) -> BatchRunner:
    chain = build_chain(env.settings, env.records, env.bodies, env.records.integrations)
    return BatchRunner(
        env.consumer,
        env.producer,
        chain,
        [env.records],
        RunnerConfig.from_settings(env.settings),
        outbox=outbox,
    )


class FlakyOutbox:
    def __init__(self, real: Outbox) -> None:
        self.real = real
        self.down = threading.Event()
        self.failures = 0

    def enqueue(
        self, targets: Sequence[TargetSpec], deliveries: Sequence[Delivery], now_ms: int
    ) -> None:
        if self.down.is_set():
            self.failures += 1
            raise StoreUnavailable("outbox away")
        self.real.enqueue(targets, deliveries, now_ms)


def test_a_redelivered_batch_enqueues_each_call_once(env: Env) -> None:
    org = env.records.default_org_id()
    hook, _ = env.records.integrations.create_webhook(org, "https://example.com/h", 100, {})
    for i in range(3):
        env.publish(make_record(f"wh-{i}"), body=chat_body())
    first = runner(env, env.records.outbox)
    assert drain(first) == 3
    # the same records again (a crash after the enqueue, before the commit, redelivers them)
    for i in range(3):
        env.publish(make_record(f"wh-{i}"), body=chat_body())
    assert drain(first) == 3
    history = env.records.outbox.history(org, hook, 10)
    assert sorted(d.request_id or "" for d in history) == ["wh-0", "wh-1", "wh-2"]
    assert first.stats.enqueued == 6 and first.stats.deliveries_dropped == 0


def test_an_outbox_outage_holds_the_batch_and_loses_no_delivery(env: Env) -> None:
    org = env.records.default_org_id()
    hook, _ = env.records.integrations.create_webhook(org, "https://example.com/h", 100, {})
    for i in range(3):
        env.publish(make_record(f"held-{i}"), body=chat_body())
    outbox = FlakyOutbox(env.records.outbox)
    outbox.down.set()
    held = runner(env, outbox)
    held._config = replace(held._config, retry_backoff_s=0.01, retry_backoff_max_s=0.02)
    committed: list[int] = []
    worker = threading.Thread(target=lambda: committed.append(held.run_once()))
    worker.start()
    wait_for(lambda: outbox.failures >= 3)
    assert env.uncommitted() == 3, "not committed while its deliveries are not durable"
    outbox.down.clear()
    worker.join(10)
    assert committed == [3]
    assert len(env.records.outbox.history(org, hook, 10)) == 3
    assert env.dead_letters(expect=0) == []
