"""Webhooks against hostile input: SSRF (at creation and again at send time, after DNS),
another organization's ids, oversized or malformed settings; and an endpoint that keeps failing
is paused, shown as such, and resumed by hand.

The API runs in this process over real stores (``ApiBackend``); the delivery worker is the real
one, sending over real sockets to a receiver on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from llmtap.delivery.worker import DeliveryWorker, WorkerConfig, default_kinds
from llmtap.settings import Settings
from llmtap.stores.records.outbox import Delivery
from support.api_backend import ApiBackend
from support.probes import wait_for
from support.receiver import Receiver


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data", analytics=False) as b:
        yield b


def client(backend: ApiBackend, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=backend.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def worker(backend: ApiBackend, **changes: object) -> DeliveryWorker:
    settings = Settings(
        data_dir=backend.settings.data_dir,
        outbox_retry_base_s=0.05,
        outbox_retry_max_s=0.2,
        outbox_poll_s=0.05,
        outbox_timeout_s=5,
    )
    config = replace(WorkerConfig.from_settings(settings), **changes)  # type: ignore[arg-type]
    return DeliveryWorker(backend.records.outbox, config, default_kinds(settings))


def enqueue(backend: ApiBackend, org: str, target_id: str, request_ids: list[str]) -> None:
    backend.records.outbox.enqueue(
        [],
        [
            Delivery(target_id, org, rid, b'{"request_id": "%s"}' % rid.encode(), rid)
            for rid in request_ids
        ],
        int(time.time() * 1000),
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",  # a name that resolves to loopback
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]:9/hook",  # loopback inside an IPv6 form
        "http://[fd00::1]/hook",
        "http://0.0.0.0:9/hook",
    ],
)
def test_private_loopback_and_metadata_urls_are_refused(backend: ApiBackend, url: str) -> None:
    _, key = backend.new_org_key("acme")
    with client(backend, key) as api:
        answer = api.post("/v1/webhooks", json={"url": url})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["type"] == "bad_request" and "url:" in error["message"]
        assert api.get("/v1/webhooks").json()["data"] == []


@pytest.mark.parametrize(
    "host",
    [
        "http://169.254.169.254",
        "http://localhost:9",
        "10.0.0.1",
        "https://[::1]",
        "ftp://x.example",
    ],
)
def test_posthog_hosts_are_held_to_the_same_rule(backend: ApiBackend, host: str) -> None:
    _, key = backend.new_org_key("acme")
    with client(backend, key) as api:
        answer = api.put("/v1/integrations/posthog", json={"api_key": "phc_x", "host": host})
        assert answer.status_code == 400, answer.text
        assert "host:" in answer.json()["error"]["message"]
        assert api.get("/v1/integrations/posthog").status_code == 404


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "https://example.com/" + "a" * 3000}, "url"),
        ({"url": "https://exa mple.com/"}, "url"),
        ({"url": "https://example.com/", "sample_rate": 101}, "sample_rate"),
        ({"url": "https://example.com/", "sample_rate": -1}, "sample_rate"),
        (
            {"url": "https://example.com/", "property_filters": {f"k{i}": "v" for i in range(21)}},
            "filters",
        ),
        ({"url": "https://example.com/", "property_filters": {"k": "v" * 300}}, "filters"),
        ({"url": "https://example.com/", "secret": "mine"}, "secret"),
    ],
)
def test_malformed_webhooks_are_refused_with_a_clear_400(
    backend: ApiBackend, body: dict[str, object], why: str
) -> None:
    _, key = backend.new_org_key("acme")
    with client(backend, key) as api:
        answer = api.post("/v1/webhooks", json=body)
        assert answer.status_code == 400, (why, answer.text)
        assert answer.json()["error"]["type"] == "bad_request"
        assert api.get("/v1/webhooks").json()["data"] == []


def test_an_organization_has_at_most_its_limit_of_webhooks(tmp_path: Path) -> None:
    with ApiBackend(tmp_path / "data", analytics=False, webhooks_max_per_org=2) as backend:
        _, key = backend.new_org_key("acme")
        with client(backend, key) as api:
            for _ in range(2):
                assert (
                    api.post("/v1/webhooks", json={"url": "https://example.com/h"}).status_code
                    == 201
                )
            third = api.post("/v1/webhooks", json={"url": "https://example.com/h"})
            assert third.status_code == 400 and "at most 2" in third.text


def test_another_organizations_webhook_cannot_be_seen_deleted_or_resumed(
    backend: ApiBackend,
) -> None:
    org_a, key_a = backend.new_org_key("a")
    _, key_b = backend.new_org_key("b")
    with client(backend, key_a) as a, client(backend, key_b) as b:
        hook = a.post("/v1/webhooks", json={"url": "https://example.com/a"}).json()
        enqueue(backend, org_a, hook["id"], ["r1"])
        assert b.get("/v1/webhooks").json()["data"] == []
        for method, path in [
            ("GET", f"/v1/webhooks/{hook['id']}"),
            ("DELETE", f"/v1/webhooks/{hook['id']}"),
            ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
            ("POST", f"/v1/webhooks/{hook['id']}/resume"),
        ]:
            answer = b.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert hook["url"] not in answer.text and "r1" not in answer.text
        # untouched for its owner
        assert [w["id"] for w in a.get("/v1/webhooks").json()["data"]] == [hook["id"]]
        assert [
            d["request_id"] for d in a.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
        ] == ["r1"]
        assert a.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
        assert a.get("/v1/webhooks").json()["data"] == []


def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(backend: ApiBackend) -> None:
    """A URL stored while it was harmless (here: written past the API) is checked again when it
    is sent: its name now resolving to 127.0.0.1 is refused, nothing reaches the receiver."""
    org, _ = backend.new_org_key("acme")
    with Receiver() as receiver:
        hook_id, _ = backend.records.integrations.create_webhook(
            org, f"http://localhost:{receiver.port}/hook", 100.0, {}
        )
        enqueue(backend, org, hook_id, ["r1"])
        refusing = worker(backend, allow_private=False)
        refusing.start()
        try:
            wait_for(
                lambda: backend.records.outbox.history(org, hook_id, 10)[0].attempts >= 1,
                timeout_s=10,
                what="a refused attempt",
            )
        finally:
            refusing.stop()
        (attempt,) = backend.records.outbox.history(org, hook_id, 10)
        assert attempt.status == "pending"
        assert attempt.last_error is not None and attempt.last_error.startswith("refused:")
        assert "127.0.0.1" in attempt.last_error or "::1" in attempt.last_error
        assert receiver.received == []

        # the same delivery, where loopback is allowed, arrives
        allowing = worker(backend, allow_private=True)
        backend.records.outbox.resume(org, hook_id, int(time.time() * 1000))
        allowing.start()
        try:
            wait_for(receiver.accepted, timeout_s=10, what="the delivery once allowed")
        finally:
            allowing.stop()


def test_an_endpoint_that_keeps_failing_is_paused_shown_and_resumed(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    with Receiver() as receiver, client(backend, key) as api:
        receiver.failing = True
        hook_id, _ = backend.records.integrations.create_webhook(
            org, receiver.url + "/hook", 100.0, {}
        )
        enqueue(backend, org, hook_id, ["r1", "r2"])
        sender = worker(
            backend,
            allow_private=True,
            policy=replace(
                WorkerConfig.from_settings(Settings()).policy,
                base_ms=20,
                max_ms=100,
                pause_after_failures=3,
                pause_after_ms=0,
            ),
        )
        sender.start()
        try:
            wait_for(
                lambda: api.get(f"/v1/webhooks/{hook_id}").json()["paused"],
                timeout_s=10,
                what="the endpoint paused",
            )
            shown = api.get(f"/v1/webhooks/{hook_id}").json()
            assert shown["state"] == "paused" and shown["last_error"] == "answered 500"
            assert shown["pending_deliveries"] == 2
            tried = len(receiver.received)
            # paused: nothing more is sent (the worker polls every 50 ms: give it many rounds)
            deadline = time.monotonic() + 0.5
            wait_for(lambda: time.monotonic() > deadline, timeout_s=2, what="several rounds")
            assert len(receiver.received) == tried

            receiver.failing = False
            resumed = api.post(f"/v1/webhooks/{hook_id}/resume")
            assert resumed.status_code == 200 and resumed.json()["state"] == "active"
            wait_for(
                lambda: {r.headers["idempotency-key"] for r in receiver.accepted()} == {"r1", "r2"},
                timeout_s=10,
                what="both deliveries after resuming",
            )
        finally:
            sender.stop()
