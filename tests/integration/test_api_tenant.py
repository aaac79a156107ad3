"""Tenant isolation, authentication and filter errors of the query API, over HTTP.

Two organizations log look-alike calls (same model, same user id, same property, even the same
request id); every endpoint and every filter is tried with A's key, and nothing of B's may come
back. Rows go in through the consumer's real sinks (records store + chDB), bodies through the
body store; the records store is SQLite, and Postgres where marked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend, postgres_schema
from support.probes import wait_for

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
T0 = 1_764_072_000_000.0  # 2025-11-25 12:00 UTC
B_MARKERS = ("banana-secret", "b-call-", "b-only")


class Tenants:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.org_a, self.key_a = backend.new_org_key("acme")
        self.org_b, self.key_b = backend.new_org_key("bravo")
        self.a_ids: list[str] = []
        for org, prefix, secret in ((self.org_a, "a", "apple"), (self.org_b, "b", "banana")):
            rows = [self._row(org, f"{prefix}-call-{i}", i) for i in range(12)]
            rows.append(self._row(org, "shared-id", 20))
            if prefix == "b":
                rows.append(self._row(org, "b-only", 21))
            else:
                self.a_ids = [r.request_id for r in rows]
            stored = []
            for row in rows:
                row.request_body_key = backend.put_body(
                    row,
                    "request",
                    json.dumps({"prompt": f"{secret}-secret {row.request_id}"}).encode(),
                )
                row.response_body_key = backend.put_body(
                    row, "response", f"answer for {secret}-secret".encode()
                )
                stored.append(row)
            backend.write(stored)
        self.org_ids = {self.org_a, self.org_b}

    @staticmethod
    def _row(org: str, request_id: str, i: int) -> RequestRow:
        return RequestRow(
            request_id=request_id,
            org_id=org,
            created_unix_ms=T0 + i * 60_000,
            source="proxy",
            provider="openai",
            method="POST",
            target_url="https://api.openai.com/v1/chat/completions",
            path="/v1/chat/completions",
            status=500 if i % 5 == 0 else 200,
            model="gpt-4o",
            endpoint="chat.completions",
            user_id="alice",
            session_id="session-1",
            properties={"team": "red"},
            usage_source="provider",
            input_tokens=100 + i,
            output_tokens=10 + i,
            total_tokens=110 + 2 * i,
            cost_nano_usd=1_000_000 * (i + 1),
            cost_source="genai-prices",
            latency_ms=100.0 + i,
            ttft_ms=20.0 + i,
            request_size=10,
            response_size=20,
        )

    def client(self, key: str | None = None, header: str = "Authorization") -> httpx.Client:
        headers = {} if key is None else {header: f"Bearer {key}"}
        return httpx.Client(base_url=self.backend.url, headers=headers, timeout=30)

    def assert_only_a(self, response: httpx.Response) -> None:
        text = response.text
        assert self.org_b not in text, response.request.url
        for marker in B_MARKERS:
            assert marker not in text, (marker, response.request.url, text[:500])


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def tenants(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tenants]:
    data = tmp_path_factory.mktemp("api-tenant") / "data"
    if request.param == "sqlite":
        with ApiBackend(data) as backend:
            yield Tenants(backend)
        return
    with postgres_schema(PG_URL) as url, ApiBackend(data, records_url=url) as backend:
        yield Tenants(backend)


FILTERS: list[dict[str, Any]] = [
    {"field": "model", "op": "eq", "value": "gpt-4o"},
    {"field": "user_id", "op": "eq", "value": "alice"},
    {"field": "session_id", "op": "eq", "value": "session-1"},
    {"field": "properties.team", "op": "eq", "value": "red"},
    {"field": "properties.team", "op": "exists", "value": True},
    {"field": "provider", "op": "in", "value": ["openai", "anthropic"]},
    {"field": "status", "op": "gte", "value": 200},
    {"field": "cost_usd", "op": "gte", "value": 0},
    {"field": "latency_ms", "op": "lt", "value": 10_000},
    {"field": "total_tokens", "op": "gt", "value": 0},
    {"field": "ttft_ms", "op": "exists", "value": True},
    {"field": "created", "op": "gte", "value": "2025-11-25T00:00:00Z"},
    {"field": "request_id", "op": "in", "value": ["b-only", "b-call-1", "shared-id"]},
    {"field": "body", "op": "contains", "value": "secret"},
    {"field": "body", "op": "contains", "value": "banana-secret"},
    {"field": "body", "op": "not_contains", "value": "apple"},
    {
        "or": [
            {"field": "properties.team", "op": "eq", "value": "red"},
            {"field": "body", "op": "contains", "value": "banana"},
        ]
    },
]


@pytest.mark.parametrize("sort", ["created", "latency", "cost", "tokens"])
def test_search_with_a_key_shows_only_its_organization(tenants: Tenants, sort: str) -> None:
    with tenants.client(tenants.key_a) as client:
        for tree in FILTERS:
            cursor = None
            seen: list[str] = []
            while True:
                body: dict[str, Any] = {"filter": tree, "sort": sort, "limit": 5}
                if cursor:
                    body["cursor"] = cursor
                response = client.post("/v1/requests/search", json=body)
                assert response.status_code == 200, response.text
                tenants.assert_only_a(response)
                page = response.json()
                seen += [r["request_id"] for r in page["data"]]
                assert {r["org_id"] for r in page["data"]} <= {tenants.org_a}
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert set(seen) <= set(tenants.a_ids)
    # the filters do match A's own calls (an empty answer would prove nothing)
    with tenants.client(tenants.key_a) as client:
        everything = client.post(
            "/v1/requests/search", json={"filter": FILTERS[-1], "limit": 100}
        ).json()
        assert sorted(r["request_id"] for r in everything["data"]) == sorted(tenants.a_ids)


def test_text_search_finds_its_own_bodies_only(tenants: Tenants) -> None:
    with tenants.client(tenants.key_a) as client:
        mine = client.post(
            "/v1/requests/search",
            json={"filter": {"field": "body", "op": "contains", "value": "apple-secret a-call-3"}},
        ).json()
        assert [r["request_id"] for r in mine["data"]] == ["a-call-3"]
        theirs = client.post(
            "/v1/requests/search",
            json={"filter": {"field": "body", "op": "contains", "value": "banana"}},
        ).json()
        assert theirs["data"] == []
    with tenants.client(tenants.key_b) as client:
        found = client.post(
            "/v1/requests/search",
            json={"filter": {"field": "body", "op": "contains", "value": "banana-secret b-only"}},
        ).json()
        assert [r["request_id"] for r in found["data"]] == ["b-only"]


def test_list_and_get_show_only_its_organization(tenants: Tenants) -> None:
    with tenants.client(tenants.key_a) as client:
        for params in (
            {},
            {"model": "gpt-4o"},
            {"user_id": "alice"},
            {"session_id": "session-1"},
            {"provider": "openai"},
            {"status": 200},
            {"property": "team:red"},
            {"start": "2025-11-25T00:00:00Z", "end": str(T0 + 10**9)},
            {"sort": "cost", "order": "asc", "limit": 1000},
        ):
            response = client.get("/v1/requests", params=params)
            assert response.status_code == 200, response.text
            tenants.assert_only_a(response)
            assert response.json()["data"], params

        shared = client.get("/v1/requests/shared-id", params={"bodies": "true"})
        assert shared.status_code == 200
        assert shared.json()["org_id"] == tenants.org_a
        assert "apple-secret" in shared.json()["bodies"]["request"]["json"]["prompt"]
        tenants.assert_only_a(shared)
        raw = client.get("/v1/requests/shared-id/bodies/response")
        assert raw.content == b"answer for apple-secret"

        for path in (
            "/v1/requests/b-only",
            "/v1/requests/b-only?bodies=true",
            "/v1/requests/b-only/bodies/request",
            "/v1/requests/b-only/bodies/response",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            tenants.assert_only_a(response)


def test_metrics_count_only_its_organization(tenants: Tenants) -> None:
    window = {"start": "2025-11-25T00:00:00Z", "end": "2025-11-26T00:00:00Z"}
    with tenants.client(tenants.key_a) as client:
        for group_by in (
            None,
            "model",
            "provider",
            "user",
            "status",
            "endpoint",
            "session",
            "property:team",
        ):
            for bucket in (None, "hour", 60):
                params: dict[str, Any] = dict(window)
                if group_by:
                    params["group_by"] = group_by
                if bucket:
                    params["bucket"] = bucket
                got = client.get("/v1/metrics", params=params)
                posted = client.post("/v1/metrics", json=params)
                assert got.status_code == posted.status_code == 200, got.text
                assert got.json() == posted.json()
                tenants.assert_only_a(got)
                totals = got.json()["totals"]
                assert totals["requests"] == len(tenants.a_ids)
                assert sum(s["requests"] for s in got.json()["series"]) in (0, len(tenants.a_ids))


def test_helicone_query_shows_only_its_organization(tenants: Tenants) -> None:
    filters: list[Any] = [
        "all",
        {"request": {"model": {"equals": "gpt-4o"}}},
        {"request": {"user_id": {"equals": "alice"}}},
        {"request_response_rmt": {"properties": {"team": {"equals": "red"}}}},
        {"properties": {"team": {"equals": "red"}}},
        {"request": {"prompt": {"contains": "banana"}}},
        {
            "left": {"request": {"model": {"contains": "gpt"}}},
            "operator": "and",
            "right": {"request_response_rmt": {"cost": {"gt": 0}}},
        },
    ]
    with tenants.client(tenants.key_a, header="Helicone-Auth") as client:
        for tree in filters:
            response = client.post(
                "/v1/request/query",
                json={"filter": tree, "limit": 1000, "offset": 0, "sort": {"created_at": "desc"}},
            )
            assert response.status_code == 200, response.text
            assert response.json()["error"] is None
            tenants.assert_only_a(response)
        everything = client.post("/v1/request/query", json={"filter": "all", "limit": 1000})
        assert sorted(r["request_id"] for r in everything.json()["data"]) == sorted(tenants.a_ids)
        page = client.post(
            "/v1/request/query",
            json={"filter": "all", "limit": 2, "offset": 3, "sort": {"created_at": "asc"}},
        ).json()["data"]
        assert [r["request_id"] for r in page] == ["a-call-3", "a-call-4"]
        assert page[0]["cost"] == pytest.approx(0.004)
        assert page[0]["prompt_tokens"] == 103


def data_routes(client: httpx.Client) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route of the published schema that reads data, with a body where one is needed."""
    schema = client.get("/v1/openapi.json").json()
    routes: list[tuple[str, str, dict[str, Any] | None]] = []
    for path, operations in schema["paths"].items():
        if path == "/v1/health":
            continue
        concrete = path.replace("{request_id}", "a-call-1").replace("{kind}", "request")
        for method in operations:
            routes.append((method.upper(), concrete, {} if method == "post" else None))
    return routes


def test_every_data_route_needs_a_valid_key(tenants: Tenants) -> None:
    with tenants.client() as anonymous:
        routes = data_routes(anonymous)
        assert len(routes) >= 7
        for header, value in (
            (None, None),
            ("Authorization", "Bearer sk-llmtap-not-a-key"),
            ("Helicone-Auth", "Bearer sk-llmtap-not-a-key"),
            ("Authorization", "Bearer"),
        ):
            headers = {} if header is None else {header: value}
            for method, path, body in routes:
                response = anonymous.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, header, response.text)
                assert response.json()["error"]["type"] == "unauthorized"
                tenants.assert_only_a(response)


def test_a_revoked_key_stops_working(tenants: Tenants) -> None:
    records = tenants.backend.records
    key_id, key = records.create_key(tenants.org_a, "short-lived")
    with tenants.client(key) as client:
        assert client.get("/v1/requests").status_code == 200
        assert records.revoke_key(key_id)
        # resolutions are cached for a few seconds: wait on the refusal, bounded
        wait_for(
            lambda: client.get("/v1/requests").status_code == 401,
            timeout_s=15,
            interval_s=0.2,
            what="the revoked key to be refused",
        )


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    [
        ("POST", "/v1/requests/search", {"filter": {"field": "colour", "value": 1}}, "colour"),
        ("POST", "/v1/requests/search", {"filter": {"and": "model"}}, "filter.and"),
        (
            "POST",
            "/v1/requests/search",
            {"filter": {"field": "latency_ms", "op": "gt", "value": "x"}},
            "expected a number",
        ),
        ("POST", "/v1/requests/search", {"limit": 0}, "limit"),
        ("POST", "/v1/requests/search", {"sort": "colour"}, "sort"),
        ("POST", "/v1/requests/search", {"cursor": "%%%"}, "cursor"),
        ("POST", "/v1/requests/search", {"start": "last tuesday"}, "start"),
        ("GET", "/v1/requests?property=team", None, "property"),
        ("GET", "/v1/metrics?group_by=colour", None, "group_by"),
        ("GET", "/v1/metrics?bucket=fortnight", None, "bucket"),
        ("POST", "/v1/metrics", {"start": 10, "end": 5}, "end"),
        ("POST", "/v1/metrics", {"start": 0, "end": 1e12, "bucket": 1}, "buckets"),
    ],
)
def test_a_malformed_request_gets_400_naming_the_problem(
    tenants: Tenants, method: str, path: str, body: Any, named: str
) -> None:
    with tenants.client(tenants.key_a) as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "bad_request"
    assert named in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("tree", "named"),
    [
        ({"request": {"model": {"regex": "x"}}}, "regex"),
        ({"request": {"colour": {"equals": "x"}}}, "colour"),
        ({"left": "all", "operator": "xor", "right": "all"}, "operator"),
    ],
)
def test_a_malformed_helicone_filter_gets_400_in_helicones_shape(
    tenants: Tenants, tree: Any, named: str
) -> None:
    with tenants.client(tenants.key_a) as client:
        response = client.post("/v1/request/query", json={"filter": tree})
    assert response.status_code == 400
    assert response.json()["data"] is None
    assert named in response.json()["error"]


def test_the_openapi_schema_is_published(tenants: Tenants) -> None:
    with tenants.client() as client:
        schema = client.get("/v1/openapi.json").json()
        docs = client.get("/v1/docs")
    assert schema["openapi"].startswith("3.")
    for path in (
        "/v1/requests/search",
        "/v1/requests",
        "/v1/requests/{request_id}",
        "/v1/metrics",
        "/v1/request/query",
    ):
        assert path in schema["paths"], path
    assert "llmtapKey" in schema["components"]["securitySchemes"]
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
