"""What one authenticated caller's queries may cost the process (issue 10, item 13): a filter past
the size limits is refused before any engine parses it; a text search stops at its byte budget,
says so, and paging on still finds every match once; and queries beyond
``api_query_concurrency`` wait for a slot, then get 503 with ``Retry-After``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.api.metrics_query import MetricsSource
from llmtap.api.query_gate import QueryGate
from llmtap.stores.analytics import MetricsQuery, MetricsResult
from llmtap.stores.analytics.overview import Overview
from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend
from support.probes import wait_for

T0 = 1_764_072_000_000.0
WINDOW = {"start": T0 - 3_600_000, "end": T0 + 3_600_000}
BODY_BYTES = 100_000
SCAN_BUDGET = 250_000
"""Two and a half bodies: a page examines three rows at most, whatever its ``limit``."""


class CountingMetrics:
    """The real analytics store, with the queries it was asked counted."""

    def __init__(self, inner: MetricsSource) -> None:
        self.inner = inner
        self.queries = 0

    def metrics(self, query: MetricsQuery) -> MetricsResult:
        self.queries += 1
        return self.inner.metrics(query)

    def overview(self, query: MetricsQuery) -> Overview:
        self.queries += 1
        return self.inner.overview(query)


class Limited:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.org, self.key = backend.new_org_key("limits")
        self.needles: list[str] = []
        rows = []
        for i in range(30):
            row = _row(self.org, f"big-{i:02d}", i)
            text = ("needle " if i % 3 == 0 else "haystk ") * (BODY_BYTES // 7)
            if i % 3 == 0:
                self.needles.append(row.request_id)
            row.response_body_key = backend.put_body(row, "response", text.encode())
            rows.append(row)
        backend.write(rows)
        metrics = backend.api.context.metrics
        assert metrics is not None
        self.metrics = CountingMetrics(metrics)
        backend.api.context.metrics = self.metrics

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.backend.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )


def _row(org: str, request_id: str, i: int) -> RequestRow:
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
        model="gpt-4o",
        usage_source="provider",
        cost_source="unpriced",
        latency_ms=100.0 + i,
    )


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    data: Path = tmp_path_factory.mktemp("api-limits") / "data"
    # the audit's 199x1000 filter is 1.2 MB of JSON: a larger body cap than the default (1 MiB,
    # which would refuse it with 413 first) lets the filter limits themselves be seen
    with ApiBackend(
        data, api_text_scan_max_bytes=SCAN_BUDGET, max_query_body_bytes=8 * 1024 * 1024
    ) as backend:
        yield Limited(backend)


def _or_of_in_lists(leaves: int, values: int) -> dict[str, Any]:
    return {
        "or": [
            {"field": "user_id", "op": "in", "value": [f"u{k}-{v}" for v in range(values)]}
            for k in range(leaves)
        ]
    }


def _nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"field": "model", "op": "eq", "value": "gpt-4o"}
    for _ in range(depth - 1):
        tree = {"and": [tree]}
    return tree


@pytest.mark.parametrize(
    ("tree", "limit"),
    [
        (_or_of_in_lists(199, 1000), "api_filter_max_values"),  # the audit's 5.4 s of parsing
        (_or_of_in_lists(2, 501), "api_filter_max_values"),
        (_or_of_in_lists(101, 1), "api_filter_max_leaves"),
        (_nested(13), "api_filter_max_depth"),
    ],
    ids=["199x1000", "2x501", "101-leaves", "depth-13"],
)
def test_an_over_limit_filter_is_400_before_any_engine_sees_it(
    limited: Limited, tree: dict[str, Any], limit: str
) -> None:
    before = limited.metrics.queries
    with limited.client() as client:
        for path in ("/v1/metrics", "/v1/requests/search"):
            response = client.post(path, json={"filter": tree, **WINDOW})
            assert response.status_code == 400, response.text
            assert limit in response.json()["error"]["message"]
    assert limited.metrics.queries == before, "the analytics engine was asked anyway"


def test_a_filter_at_the_limits_runs(limited: Limited) -> None:
    with limited.client() as client:
        at_limit = _or_of_in_lists(2, 499)
        at_limit["or"].append(_nested(11))
        response = client.post("/v1/metrics", json={"filter": at_limit, **WINDOW})
        assert response.status_code == 200, response.text
        assert response.json()["totals"]["requests"] == 30
        response = client.post("/v1/requests/search", json={"filter": at_limit, **WINDOW})
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == 30
        many = [f"p{i}:x" for i in range(101)]
        response = client.get("/v1/requests", params={"property": many})
        assert response.status_code == 400 and "api_filter_max_leaves" in response.text


def test_text_search_stops_at_the_byte_budget_and_pages_on_to_every_match(
    limited: Limited,
) -> None:
    tree = {"field": "body", "op": "contains", "value": "needle"}
    found: list[str] = []
    truncated_pages = 0
    cursor = None
    with limited.client() as client:
        for _ in range(40):
            body = {"filter": tree, "limit": 5, "sort": "created", "order": "asc", **WINDOW}
            response = client.post("/v1/requests/search", json={**body, "cursor": cursor})
            assert response.status_code == 200, response.text
            page = response.json()
            # the budget plus one row's bodies at most: three 100 KB bodies
            assert page["scanned"] <= SCAN_BUDGET // BODY_BYTES + 1
            if page["scan_truncated"]:
                truncated_pages += 1
                assert page["next_cursor"] is not None and len(page["data"]) < 5
            found += [r["request_id"] for r in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert cursor is None, "paging did not end"
    assert truncated_pages > 0
    assert found == limited.needles  # every match, once, in order


def test_queries_past_the_concurrency_limit_wait_then_get_503(limited: Limited) -> None:
    context = limited.backend.api.context
    original = context.gate
    try:
        # a query holding the only slot (deterministic stand-in for a slow one)
        context.gate = QueryGate(1, 0.3)
        with context.gate.slot(), limited.client() as client:
            started = time.monotonic()
            busy = client.post("/v1/metrics", json=WINDOW)
            waited = time.monotonic() - started
            search_busy = client.post("/v1/requests/search", json={})
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["type"] == "busy"
        assert int(busy.headers["Retry-After"]) >= 1
        assert waited >= 0.3
        assert search_busy.status_code == 503

        # a query that finds the slot taken waits, and runs as soon as it is free
        context.gate = QueryGate(1, 30.0)
        answers: list[httpx.Response] = []
        with limited.client() as client:
            waiter = threading.Thread(
                target=lambda: answers.append(client.post("/v1/metrics", json=WINDOW))
            )
            with context.gate.slot():
                waiter.start()
                wait_for(lambda: context.gate.waiting == 1, timeout_s=10)
                assert not answers
            waiter.join(30)
        assert len(answers) == 1 and answers[0].status_code == 200, answers
    finally:
        context.gate = original
