"""The runner's enqueue step (PostHog events): deliveries go into the outbox only after every sink
took the batch, once per call however often the batch is redelivered, from the row as stored; an
outbox outage holds the batch like a store outage (never a dead letter, never a lost delivery).
Webhooks cost the consumer nothing: the delivery worker feeds them from the stored calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from test_consumer_runner import Env, chat_body, drain, env, make_record

from llmtap.consumer.chain import build_chain, public_links
from llmtap.consumer.handlers.posthog import target_id
from llmtap.consumer.runner import BatchRunner, Outbox, RunnerConfig
from llmtap.delivery.webhook_feed import WebhookFeed
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


def posthog_project(env: Env) -> str:
    """The default organization's PostHog project; its outbox target's id."""
    org = env.records.default_org_id()
    env.records.integrations.set_posthog(org, "https://ph.example.com", "phc_key")
    return target_id(org, "https://ph.example.com", "phc_key")


def test_a_redelivered_batch_enqueues_each_call_once(env: Env) -> None:
    org = env.records.default_org_id()
    hook = posthog_project(env)
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
    hook = posthog_project(env)
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


def test_webhooks_cost_the_consumer_nothing_and_are_fed_from_the_stored_calls(env: Env) -> None:
    """Three webhooks: the consumer enqueues nothing and writes no outbox row; the worker's feed
    then finds every call, with its bodies, for each webhook."""
    org = env.records.default_org_id()
    hooks = [
        env.records.integrations.create_webhook(org, f"https://example.com/{i}", 100, {})[0]
        for i in range(3)
    ]
    for i in range(3):
        env.publish(make_record(f"fed-{i}"), body=chat_body())
    consumer = runner(env, env.records.outbox)
    assert drain(consumer) == 3
    assert consumer.stats.enqueued == 0
    assert all(env.records.outbox.history(org, hook, 10) == [] for hook in hooks)

    feed = WebhookFeed(
        env.records.outbox_tail,
        env.bodies,
        public_links(env.settings),
        env.settings.webhook_body_max_bytes,
    )
    now = int(time.time() * 1000)
    tailing = feed.tailing(now, 10)
    assert sorted(tailing) == sorted(hooks)
    for hook in hooks:
        assert feed.feed(tailing[hook], 10, now) == 3
        history = env.records.outbox.history(org, hook, 10)
        assert sorted(d.request_id or "" for d in history) == ["fed-0", "fed-1", "fed-2"]
    (claimed, *_) = env.records.outbox.claim(hooks[0], now, 1, 60_000)
    assert json.loads(claimed.body)["request_body"] == chat_body().decode()
