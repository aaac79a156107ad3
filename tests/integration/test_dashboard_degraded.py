"""The dashboard when things are missing or bounded: no analytics store (``llmtap api`` without
one) is a notice on the Overview, not a 500, while Requests still works; a body search that
reaches its scan budget says so and offers to continue."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend
from support.dashboard import signed_in


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiBackend]:
    data: Path = tmp_path_factory.mktemp("dashboard-degraded") / "data"
    # each call's request body is 100 bytes: the budget stops a search after 3 of them
    with ApiBackend(data, analytics=False, api_text_scan_max_bytes=250) as backend:
        yield backend


@pytest.fixture(scope="module")
def client(backend: ApiBackend) -> Iterator[httpx.Client]:
    org, key = backend.new_org_key("acme")
    now = time.time() * 1000.0
    rows = []
    for i in range(10):
        row = RequestRow(
            request_id=f"call-{i}",
            org_id=org,
            created_unix_ms=now - 1000.0 * (i + 1),
            source="proxy",
            provider="openai",
            method="POST",
            target_url="https://api.openai.com/v1/chat/completions",
            path="/v1/chat/completions",
            status=200,
        )
        text = b"needle" if i == 8 else b"hay"
        row.request_body_key = backend.put_body(row, "request", text.ljust(100, b" "))
        rows.append(row)
    backend.write(rows)
    with signed_in(backend.url, key) as client:
        yield client


def test_without_an_analytics_store_the_overview_says_so(client: httpx.Client) -> None:
    overview = client.get("/")
    assert overview.status_code == 200
    assert "Charts need the analytics store" in overview.text
    assert client.get("/requests").text.count('data-href="/requests/call-') == 10


def test_a_body_search_over_its_budget_offers_to_continue(client: httpx.Client) -> None:
    page = client.get("/requests", params={"q": "needle"})
    assert page.status_code == 200
    assert "search stopped early — continue" in page.text
    found: list[str] = []
    for _ in range(10):  # follow "continue" as a person would, a bounded number of times
        found += re.findall(r'data-href="/requests/([^"]+)"', page.text)
        link = re.search(r'<a href="([^"]+)"[^>]*>search stopped early', page.text)
        if link is None:
            break
        page = client.get(link.group(1).replace("&amp;", "&"))
    assert found == ["call-8"]
