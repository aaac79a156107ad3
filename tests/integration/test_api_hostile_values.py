"""Hostile values through the query API: what is stored with backslashes, tabs, newlines, ``\\N``,
quotes or unicode is found by search (records store) and counted by metrics (chDB) alike; numbers
the columns cannot hold, and other bad input, are a 400 naming the problem, never a 500 or a
wrong count, and never an engine's error text.

Rows go in through the consumer's own sinks (records store + chDB); SQLite, and Postgres where
marked.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend, postgres_schema

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
T0 = 1_764_072_000_000.0  # 2025-11-25 12:00 UTC
WINDOW = {"start": T0 - 3_600_000, "end": T0 + 3_600_000}

HOSTILE = [
    "plain",
    "C:\\temp\\new",
    "back\\slash",
    "trailing\\",
    "\\",
    "tab\there",
    "new\nline",
    "cr\rhere",
    "\\N",
    "\\t not a tab",
    "quote'double\"back`tick",
    "ü€😀 ✓",
    "{curly:String}",
    " spaced ",
]
"""Stored as a property value, a user id and a model; ``HOSTILE[i]`` on ``i % 3 + 1`` rows."""

ODD_PROPERTY = "we\\ird\tname"
FIELDS = ("properties.tag", "user_id", "model")
LEAKS = ("sqlite", "OverflowError", "Code:", "DB::Exception", "JSON path", "Traceback", "psycopg")


def _row(org: str, request_id: str, value: str, i: int) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id=org,
        created_unix_ms=T0 + i * 1000,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
        model=value,
        endpoint="chat.completions",
        user_id=value,
        properties={"tag": value, ODD_PROPERTY: value},
        usage_source="provider",
        cost_nano_usd=1_000_000,
        cost_source="genai-prices",
        latency_ms=100.0 + i,
    )


class Hostile:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.org, self.key = backend.new_org_key("hostile")
        rows = []
        for i, value in enumerate(HOSTILE):
            rows += [_row(self.org, f"h-{i}-{k}", value, i * 10 + k) for k in range(i % 3 + 1)]
        backend.write(rows)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.backend.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def hostile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    data = tmp_path_factory.mktemp("api-hostile") / "data"
    if request.param == "sqlite":
        with ApiBackend(data) as backend:
            yield Hostile(backend)
        return
    with postgres_schema(PG_URL) as url, ApiBackend(data, records_url=url) as backend:
        yield Hostile(backend)


def _search_count(client: httpx.Client, tree: dict[str, Any]) -> int:
    response = client.post("/v1/requests/search", json={"filter": tree, "limit": 1000, **WINDOW})
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


def _metrics_count(client: httpx.Client, tree: dict[str, Any]) -> int:
    response = client.post("/v1/metrics", json={"filter": tree, **WINDOW})
    assert response.status_code == 200, response.text
    return int(response.json()["totals"]["requests"])


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("index", range(len(HOSTILE)), ids=[repr(v) for v in HOSTILE])
def test_search_and_metrics_agree_on_every_value(hostile: Hostile, field: str, index: int) -> None:
    value = HOSTILE[index]
    expected = index % 3 + 1
    with hostile.client() as client:
        for tree in (
            {"field": field, "op": "eq", "value": value},
            {"field": field, "op": "in", "value": [value, "nothing-like-it"]},
            {"field": field, "op": "contains", "value": value},
        ):
            if tree["op"] == "contains" and value in ("\\", "plain"):
                continue  # a substring of other values: counted below by eq
            assert _search_count(client, tree) == expected, tree
            assert _metrics_count(client, tree) == expected, tree
        ne = {"field": field, "op": "ne", "value": value}
        assert _search_count(client, ne) == _metrics_count(client, ne)


def test_an_odd_property_name_filters_and_groups_alike(hostile: Hostile) -> None:
    with hostile.client() as client:
        for index, value in enumerate(HOSTILE):
            tree = {"field": f"properties.{ODD_PROPERTY}", "op": "eq", "value": value}
            assert _search_count(client, tree) == index % 3 + 1, value
            assert _metrics_count(client, tree) == index % 3 + 1, value
        response = client.post(
            "/v1/metrics", json={"group_by": f"property:{ODD_PROPERTY}", **WINDOW}
        )
        assert response.status_code == 200, response.text
        groups = {item["group"]: item["requests"] for item in response.json()["series"]}
    assert groups == {value: i % 3 + 1 for i, value in enumerate(HOSTILE)}


def _assert_400_naming(response: httpx.Response, named: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert named in message, message
    for leak in LEAKS:
        assert leak not in response.text, response.text


BIG = 2**63
OUT_OF_RANGE: list[tuple[dict[str, Any], str]] = [
    ({"field": "cost_usd", "op": "lt", "value": 1e10}, "cost_usd"),
    ({"field": "cost_usd", "op": "gt", "value": -1e10}, "cost_usd"),
    ({"field": "status", "op": "lt", "value": BIG}, "status"),
    ({"field": "status", "op": "lt", "value": 2**31}, "status"),
    ({"field": "status", "op": "in", "value": [200, BIG]}, "status"),
    ({"field": "input_tokens", "op": "gt", "value": BIG}, "input_tokens"),
    ({"field": "request_size", "op": "gte", "value": -BIG - 1}, "request_size"),
    ({"field": "latency_ms", "op": "lt", "value": 10**400}, "latency_ms"),
    ({"field": "total_tokens", "op": "lt", "value": 10**400}, "total_tokens"),
    ({"field": "created", "op": "gt", "value": 10**400}, "created"),
    ({"field": "created", "op": "gt", "value": 1e300}, "created"),
]


@pytest.mark.parametrize(("tree", "named"), OUT_OF_RANGE, ids=[n for _, n in OUT_OF_RANGE])
def test_a_number_out_of_the_columns_range_is_400_naming_the_field(
    hostile: Hostile, tree: dict[str, Any], named: str
) -> None:
    with hostile.client() as client:
        _assert_400_naming(client.post("/v1/requests/search", json={"filter": tree}), named)
        _assert_400_naming(client.post("/v1/metrics", json={"filter": tree}), named)


def _cursor(value: Any) -> str:
    raw = {"s": "created", "d": "desc", "v": value, "i": "h-0-0"}
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


BAD_INPUT: list[tuple[str, str, Any, str]] = [
    ("GET", f"/v1/requests?status={BIG}", None, "status"),
    ("GET", "/v1/requests?status=99999999999", None, "status"),
    ("POST", "/v1/requests/search", {"cursor": _cursor(BIG)}, "cursor"),
    ("POST", "/v1/requests/search", {"cursor": _cursor(10**400)}, "cursor"),
    ("GET", f"/v1/requests?cursor={_cursor(BIG)}", None, "cursor"),
    (
        "POST",
        "/v1/requests/search",
        {"cursor": base64.urlsafe_b64encode(b"[" * 100_000).decode()},
        "cursor",
    ),
    ("GET", "/v1/metrics?start=1e300", None, "start"),
    ("GET", "/v1/metrics?end=1e300", None, "end"),
    ("POST", "/v1/metrics", {"start": 0, "end": 10**400}, "end"),
    ("POST", "/v1/metrics", {"start": 0, "end": 1e20}, "end"),
    ("POST", "/v1/metrics", {"bucket": 2**32, **WINDOW}, "bucket"),
    ("POST", "/v1/metrics", {"bucket": 2**32 + 3600, **WINDOW}, "bucket"),
    ("GET", f"/v1/metrics?bucket={BIG}", None, "bucket"),
    ("POST", "/v1/requests/search", {"start": 10**400}, "start"),
    (
        "POST",
        "/v1/requests/search",
        {"filter": {"field": "properties.a\u0000b", "op": "eq", "value": "x"}},
        "property name",
    ),
    (
        "POST",
        "/v1/metrics",
        {"filter": {"field": "properties.a\u0000b", "op": "eq", "value": "x"}},
        "property name",
    ),
    ("GET", "/v1/requests?property=a%00b:x", None, "property name"),
    ("GET", "/v1/metrics?group_by=property:a%00b", None, "property name"),
    (
        "POST",
        "/v1/requests/search",
        {"filter": {"field": "model", "op": "eq", "value": "a\u0000b"}},
        "NUL",
    ),
    ("POST", "/v1/metrics", {"filter": {"field": "user_id", "op": "eq", "value": "\u0000"}}, "NUL"),
    ("GET", "/v1/requests?model=a%00b", None, "NUL"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    BAD_INPUT,
    ids=[f"{m} {p[:40]}" for m, p, _, _ in BAD_INPUT],
)
def test_bad_input_is_400_naming_the_problem(
    hostile: Hostile, method: str, path: str, body: Any, named: str
) -> None:
    with hostile.client() as client:
        _assert_400_naming(client.request(method, path, json=body), named)
