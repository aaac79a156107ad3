"""The Webhooks page over HTTP against the real API and stores: it lists the organization's
webhooks with their state (never a secret), shows a webhook's delivery history, resumes and
deletes only with the CSRF token and only the session's organization's webhooks, and a URL is
text in the HTML bytes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmtap.stores.records.outbox import Delivery, RetryPolicy
from support.api_backend import ApiBackend
from support.dashboard import csrf_of, signed_in

HOSTILE_URL = "https://example.com/<script>alert(1)</script>"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data", analytics=False) as opened:
        yield opened


def test_the_page_lists_shows_history_resumes_and_deletes(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    created = httpx.post(
        backend.url + "/v1/webhooks",
        json={"url": HOSTILE_URL},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    hook, secret = created["id"], created["secret"]
    now = int(time.time() * 1000)
    backend.records.outbox.enqueue([], [Delivery(hook, org, "req-1", b"{}", "req-1")], now)
    (claimed,) = backend.records.outbox.claim(hook, now, 10, 60_000)
    policy = RetryPolicy(1000, 1000, 10**9, 1, 0)
    backend.records.outbox.failed(hook, [claimed], now, "answered 503", 503, policy)

    with signed_in(backend.url, key) as client:
        page = client.get("/webhooks")
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
        assert secret not in page.text and "paused" in page.text
        view = client.get(f"/webhooks/{hook}")
        assert view.status_code == 200 and "req-1" in view.text and "answered 503" in view.text

        assert client.post(f"/webhooks/{hook}/resume", data={}).status_code == 403
        resumed = client.post(f"/webhooks/{hook}/resume", data={"csrf": csrf_of(client)})
        assert resumed.status_code == 303
        target = backend.records.outbox.target(org, hook)
        assert target is not None and not target.paused

        deleted = client.post(f"/webhooks/{hook}/delete", data={"csrf": csrf_of(client)})
        assert deleted.status_code == 303
        assert backend.records.integrations.webhooks(org) == []


def test_another_organizations_webhook_is_not_found_and_untouched(backend: ApiBackend) -> None:
    org_a, _ = backend.new_org_key("a")
    _, key_b = backend.new_org_key("b")
    hook, _ = backend.records.integrations.create_webhook(org_a, "https://example.com/a", 100, {})
    with signed_in(backend.url, key_b) as b:
        assert "example.com/a" not in b.get("/webhooks").text
        assert b.get(f"/webhooks/{hook}").status_code == 404
        csrf = csrf_of(b)
        assert b.post(f"/webhooks/{hook}/delete", data={"csrf": csrf}).status_code == 404
        assert b.post(f"/webhooks/{hook}/resume", data={"csrf": csrf}).status_code == 404
    assert [w.target.id for w in backend.records.integrations.webhooks(org_a)] == [hook]
