"""Alert rules against hostile input: unknown metrics and comparisons, thresholds that are not
finite or absurdly large, windows out of range, malformed filters and group-bys, SSRF URLs, the
per-organization limit, and another organization's rules and history reached by hand-edited ids.

The API runs in this process over real stores (``ApiBackend``), over real sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.api_backend import ApiBackend

PUBLIC = "https://93.184.215.14/alert"  # an address literal: checked without DNS
GOOD: dict[str, Any] = {"url": PUBLIC, "metric": "error_rate", "threshold": 0.2}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data", analytics=False, alerts_max_per_org=3) as b:
        yield b


def client(backend: ApiBackend, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=backend.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_a_good_rule_is_created_with_its_defaults(backend: ApiBackend) -> None:
    _, key = backend.new_org_key("acme")
    with client(backend, key) as api:
        answer = api.post("/v1/alerts", json=GOOD)
        assert answer.status_code == 201, answer.text
        rule = answer.json()
        assert rule["comparison"] == "gt" and rule["window_s"] == 300
        assert rule["min_requests"] == 1 and rule["state"] == "ok"
        assert rule["name"] == "error_rate > 0.2"
        assert [r["id"] for r in api.get("/v1/alerts").json()["data"]] == [rule["id"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metric": "error_rate; DROP TABLE alert_rules"}, "metric"),
        ({"metric": "m_errors"}, "metric"),
        ({"metric": "x" * 10_000}, "metric"),
        ({"comparison": "=="}, "comparison"),
        ({"threshold": 1e13}, "threshold"),
        ({"threshold": -1e300}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"window_s": 0}, "window_s"),
        ({"window_s": 59}, "window_s"),
        ({"window_s": 86_401}, "window_s"),
        ({"window_s": 10**30}, "window_s"),
        ({"window_s": 1.5}, "window_s"),
        ({"min_requests": -1}, "min_requests"),
        ({"group_by": "org_id"}, "group_by"),
        ({"group_by": "property:"}, "group_by"),
        ({"group_by": "property:a\x00b"}, "group_by"),
        ({"filter": {"field": "nope", "op": "eq", "value": 1}}, "filter"),
        ({"filter": {"field": "body", "op": "contains", "value": "secret"}}, "filter"),
        ({"filter": [1, 2]}, "filter"),
        ({"name": "a\nb"}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"surprise": True}, "surprise"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "http://user:pw@93.184.215.14/"}, "url"),
        ({"url": "http://127.0.0.1:9/alert"}, "url"),
        ({"url": "http://localhost:9/alert"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
        ({"url": "http://[::1]:9/alert"}, "url"),
        ({"url": "http://[::ffff:10.0.0.1]/alert"}, "url"),
        ({"url": "http://0.0.0.0:9/alert"}, "url"),
    ],
)
def test_malformed_or_hostile_rules_are_refused_with_a_clear_400(
    backend: ApiBackend, change: dict[str, Any], field: str
) -> None:
    _, key = backend.new_org_key("acme")
    with client(backend, key) as api:
        answer = api.post("/v1/alerts", json={**GOOD, **change})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert field in error["message"], error
        assert "Traceback" not in answer.text and "sqlalchemy" not in answer.text.lower()
        assert api.get("/v1/alerts").json()["data"] == []


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_thresholds_that_are_not_finite_are_refused(backend: ApiBackend, raw: bytes) -> None:
    _, key = backend.new_org_key("acme")
    body = b'{"url": "%s", "metric": "cost_usd", "threshold": %s}' % (PUBLIC.encode(), raw)
    with client(backend, key) as api:
        answer = api.post("/v1/alerts", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, answer.text
        assert api.get("/v1/alerts").json()["data"] == []


def test_an_organization_has_at_most_its_limit_of_rules(backend: ApiBackend) -> None:
    _, key = backend.new_org_key("acme")
    with client(backend, key) as api:
        for _ in range(3):
            assert api.post("/v1/alerts", json=GOOD).status_code == 201
        answer = api.post("/v1/alerts", json=GOOD)
        assert answer.status_code == 400 and "at most 3" in answer.json()["error"]["message"]
    _, other = backend.new_org_key("bravo")
    with client(backend, other) as api:
        assert api.post("/v1/alerts", json=GOOD).status_code == 201


def test_another_organizations_rule_and_history_are_404(backend: ApiBackend) -> None:
    _, key_a = backend.new_org_key("acme")
    _, key_b = backend.new_org_key("bravo")
    with client(backend, key_a) as api_a:
        rule = api_a.post("/v1/alerts", json=GOOD).json()
    with client(backend, key_b) as api_b:
        for method, path in [
            ("GET", f"/v1/alerts/{rule['id']}"),
            ("GET", f"/v1/alerts/{rule['id']}/history"),
            ("GET", f"/v1/alerts/{rule['id']}/deliveries"),
            ("POST", f"/v1/alerts/{rule['id']}/resume"),
            ("DELETE", f"/v1/alerts/{rule['id']}"),
            ("GET", "/v1/alerts/al_000000000000000000000000"),
            ("GET", "/v1/alerts/..%2F..%2Fv1%2Fwebhooks"),
        ]:
            answer = api_b.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
        assert api_b.get("/v1/alerts").json()["data"] == []
        # a rule is not a webhook either, in any organization
        assert api_b.get(f"/v1/webhooks/{rule['id']}").status_code == 404
    with client(backend, key_a) as api_a:
        assert api_a.get(f"/v1/alerts/{rule['id']}").status_code == 200
        assert api_a.get(f"/v1/webhooks/{rule['id']}").status_code == 404
        assert api_a.get("/v1/webhooks").json()["data"] == []
        assert api_a.delete(f"/v1/alerts/{rule['id']}").status_code == 204
        assert api_a.get(f"/v1/alerts/{rule['id']}").status_code == 404
        assert api_a.get(f"/v1/alerts/{rule['id']}/history").status_code == 404


def test_without_a_key_nothing_is_answered(backend: ApiBackend) -> None:
    with httpx.Client(base_url=backend.url, timeout=10) as anonymous:
        assert anonymous.get("/v1/alerts").status_code == 401
        assert anonymous.post("/v1/alerts", json=GOOD).status_code == 401
