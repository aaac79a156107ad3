"""The Alerts page over HTTP against the real API and stores: it lists the organization's rules
with their state (never a secret), shows a rule's episodes, deletes only with the CSRF token and
only the session's organization's rules, and a rule's name, URL and group are text in the HTML."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmtap.alerts.evaluator import group_key
from llmtap.stores.records.alerts import Episode, Firing
from llmtap.stores.records.outbox import Delivery
from support.api_backend import ApiBackend
from support.dashboard import csrf_of, signed_in

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data", analytics=False) as opened:
        yield opened


def test_the_page_lists_shows_episodes_and_deletes(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    created = httpx.post(
        backend.url + "/v1/alerts",
        json={
            "url": "https://93.184.215.14/" + HOSTILE,
            "name": "errors " + HOSTILE,
            "metric": "error_rate",
            "threshold": 0.1,
            "group_by": "model",
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    rule, secret = created.json()["id"], created.json()["secret"]
    now = int(time.time() * 1000)
    episode = Episode("ep_1", rule, group_key(HOSTILE), HOSTILE, 0.1, now, 0.75, None, None)
    backend.records.alerts.apply(
        rule, now, [Firing(episode, Delivery(rule, org, "ep_1.firing", b"{}"))], []
    )

    with signed_in(backend.url, key) as client:
        page = client.get("/alerts")
        assert page.status_code == 200
        assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
        assert secret not in page.text and "firing" in page.text
        view = client.get(f"/alerts/{rule}")
        assert view.status_code == 200 and "0.75" in view.text
        assert HOSTILE not in view.text and secret not in view.text

        assert client.post(f"/alerts/{rule}/delete", data={}).status_code == 403
        deleted = client.post(f"/alerts/{rule}/delete", data={"csrf": csrf_of(client)})
        assert deleted.status_code == 303
        assert backend.records.alerts.rules(org) == []


def test_another_organizations_rule_is_not_found_and_untouched(backend: ApiBackend) -> None:
    _, key_a = backend.new_org_key("a")
    _, key_b = backend.new_org_key("b")
    rule = httpx.post(
        backend.url + "/v1/alerts",
        json={"url": "https://93.184.215.14/a", "metric": "cost_usd", "threshold": 5},
        headers={"Authorization": f"Bearer {key_a}"},
        timeout=10,
    ).json()["id"]
    with signed_in(backend.url, key_b) as b:
        assert "93.184.215.14" not in b.get("/alerts").text
        assert b.get(f"/alerts/{rule}").status_code == 404
        assert b.post(f"/alerts/{rule}/delete", data={"csrf": csrf_of(b)}).status_code == 404
    with signed_in(backend.url, key_a) as a:
        assert a.get(f"/alerts/{rule}").status_code == 200
