"""``/export.csv`` and ``/export.jsonl`` over HTTP against the real API and stores: the rows are
the API's search for the same filter and range (ids and fields), only the session's organization,
cells that a spreadsheet would run as formulas are neutralized, and the answer streams (its first
bytes arrive while later pages are still unread)."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.stores.records.reader import PageQuery
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend
from support.dashboard import signed_in

FORMULAS = ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def _row(org: str, request_id: str, created: float, **fields: object) -> RequestRow:
    values: dict[str, object] = {
        "request_id": request_id,
        "org_id": org,
        "created_unix_ms": created,
        "source": "proxy",
        "provider": "openai",
        "method": "POST",
        "target_url": "https://api.openai.com/v1/chat/completions",
        "path": "/v1/chat/completions",
        "status": 200,
        "model": "gpt-4o",
        "usage_source": "provider",
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "cost_nano_usd": 1234,
        "cost_source": "genai-prices",
        "latency_ms": 100.0,
    }
    values.update(fields)
    return RequestRow(**values)  # type: ignore[arg-type]


class Seeded:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.org_a, self.key_a = backend.new_org_key("acme")
        self.org_b, self.key_b = backend.new_org_key("bravo")
        now = time.time() * 1000.0
        rows = [
            _row(
                self.org_a,
                f"a-{i:05d}",
                now - 1000.0 * i,
                model="gpt-4o" if i % 3 else "claude-x",
                user_id=f"user-{i % 7}",
                session_id=f"s-{i % 5}",
                properties={"env": "prod" if i % 2 else "dev", "n": str(i)},
                latency_ms=float(i % 97),
                ttft_ms=None if i % 4 else 12.5,
                cost_nano_usd=None if i % 11 == 0 else 1000 + i,
            )
            for i in range(2500)
        ]
        rows += [
            _row(
                self.org_a,
                f"formula-{i}",
                now - 10.0 * i,
                model=text,
                user_id=text,
                properties={"k": text},
            )
            for i, text in enumerate(FORMULAS)
        ]
        rows.append(_row(self.org_a, "old", now - 3 * 86400_000.0))
        for start in range(0, len(rows), 1000):
            backend.records.write_batch(rows[start : start + 1000])
        backend.records.write_batch(
            [_row(self.org_b, f"b-secret-{i}", now - i, model="banana") for i in range(50)]
        )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    data: Path = tmp_path_factory.mktemp("dashboard-export") / "data"
    with ApiBackend(data, analytics=False) as backend:
        yield Seeded(backend)


@pytest.fixture(scope="module")
def client_a(seeded: Seeded) -> Iterator[httpx.Client]:
    with signed_in(seeded.backend.url, seeded.key_a) as client:
        yield client


def _api_rows(seeded: Seeded, body: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    with httpx.Client(base_url=seeded.backend.url, timeout=30) as api:
        while True:
            answer = api.post(
                "/v1/requests/search",
                json={**body, "limit": 1000, "cursor": cursor},
                headers={"Authorization": f"Bearer {seeded.key_a}"},
            )
            assert answer.status_code == 200, answer.text
            page = answer.json()
            rows += page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                return rows


def test_jsonl_and_csv_hold_the_apis_rows_for_the_same_filter(
    seeded: Seeded, client_a: httpx.Client
) -> None:
    tree = {
        "or": [
            {"field": "model", "op": "eq", "value": "gpt-4o"},
            {"field": "properties.env", "op": "eq", "value": "prod"},
        ]
    }
    params = {"f": json.dumps(tree), "range": "24h", "sort": "latency", "order": "asc"}
    end = time.time() * 1000.0
    expected = _api_rows(
        seeded,
        {
            "filter": tree,
            "start": end - 86400_000.0,
            "end": end + 60_000,
            "sort": "latency",
            "order": "asc",
        },
    )
    assert len(expected) > 1000  # more than one page of the export
    jsonl = client_a.get("/export.jsonl", params=params)
    assert jsonl.status_code == 200
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    assert 'attachment; filename="llmtap-requests-' in jsonl.headers["content-disposition"]
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert lines == expected  # same ids, same order, same fields
    exported = client_a.get("/export.csv", params=params)
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.headers["content-disposition"].endswith('.csv"')
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["request_id"] for r in table] == [r["request_id"] for r in expected]
    for got, want in zip(table, expected, strict=True):
        assert got["created_at"] == want["created_at"]
        assert int(got["status"]) == want["status"]
        assert got["model"] == want["model"] and got["user_id"] == want["user_id"]
        assert float(got["latency_ms"]) == want["latency_ms"]
        assert (float(got["cost_usd"]) if got["cost_usd"] else None) == want["cost_usd"]
        assert (float(got["ttft_ms"]) if got["ttft_ms"] else None) == want["ttft_ms"]
        assert json.loads(got["properties"]) == want["properties"]


def test_the_range_and_organization_are_honoured(seeded: Seeded, client_a: httpx.Client) -> None:
    day = client_a.get("/export.jsonl", params={"range": "24h"}).text
    ids = [json.loads(line)["request_id"] for line in day.splitlines()]
    assert len(ids) == 2500 + len(FORMULAS) and "old" not in ids
    week = client_a.get("/export.jsonl", params={"range": "7d"}).text
    assert '"request_id":"old"' in week
    assert "b-secret" not in week and "banana" not in week
    hand_edited = client_a.get("/export.csv", params={"org_id": seeded.org_b, "range": "7d"})
    assert "b-secret" not in hand_edited.text
    assert client_a.get("/export.csv", params={"f": "{nope"}).status_code == 400
    # this backend has no analytics store: the lists say so, the session view still works
    for path in ("/sessions", "/users", "/properties/env"):
        page = client_a.get(path)
        assert page.status_code == 200 and "needs the analytics store" in page.text, path
    assert client_a.get("/sessions/s-1").status_code == 200
    with httpx.Client(base_url=seeded.backend.url) as anonymous:
        refused = anonymous.get("/export.csv")
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
        assert (
            anonymous.get(
                "/export.jsonl", headers={"Authorization": f"Bearer {seeded.key_a}"}
            ).status_code
            == 303
        )  # the dashboard never takes a bearer key


def test_text_in_bodies_exports_through_the_search(seeded: Seeded, client_a: httpx.Client) -> None:
    # no bodies are stored here: a text search finds nothing, and says so with an empty file
    text = client_a.get("/export.jsonl", params={"q": "anything"}).text
    assert text == ""
    header = client_a.get("/export.csv", params={"q": "anything"}).text
    assert header.startswith("request_id,created_at,") and header.count("\n") == 1


def test_cells_a_spreadsheet_would_run_are_neutralized(client_a: httpx.Client) -> None:
    tree = {"field": "request_id", "op": "in", "value": [f"formula-{i}" for i in range(6)]}
    text = client_a.get("/export.csv", params={"f": json.dumps(tree)}).text
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(table) == len(FORMULAS)
    by_id = {r["request_id"]: r for r in table}
    for i, formula in enumerate(FORMULAS):
        row = by_id[f"formula-{i}"]
        assert row["model"] == "'" + formula and row["user_id"] == "'" + formula
        assert json.loads(row["properties"]) == {"k": formula}  # JSON, starting with "{"
    for row in table:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_the_export_streams_before_the_last_page_is_read(
    seeded: Seeded, client_a: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = RecordsStore.export_page
    calls: list[int] = []
    release = threading.Event()
    second_done = threading.Event()

    def page(
        self: RecordsStore, query: PageQuery, columns: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        calls.append(query.limit)
        if len(calls) == 2:  # the second page waits until the client has bytes in hand
            release.wait(10)
            try:
                return original(self, query, columns)
            finally:
                second_done.set()
        return original(self, query, columns)

    monkeypatch.setattr(RecordsStore, "export_page", page)
    with client_a.stream("GET", "/export.csv", params={"range": "24h"}) as response:
        assert response.status_code == 200
        chunks = response.iter_bytes()
        first = next(chunks)
        assert first.startswith(b"request_id,created_at,")
        assert not second_done.is_set()  # bytes arrived while the second page was unread
        release.set()
        total = len(first) + sum(len(chunk) for chunk in chunks)
    assert total > 100_000
    assert len(calls) == 3 and all(limit <= 1000 for limit in calls)
