"""The records store's reads behind the Sessions, Keys and Export pages, on SQLite and Postgres:
a session's calls and per-path figures, revoking only the organization's own key, and export
pages (keyset, no headers), each scoped to one organization."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmtap.stores.records import RecordsStore
from llmtap.stores.records.reader import PageQuery, Position
from llmtap.stores.row import RequestRow

pytest_plugins = ["contract.test_records_store"]


@pytest.fixture
def pages_store(records_url: str) -> Iterator[RecordsStore]:
    store = RecordsStore(records_url)
    yield store
    store.close()


def _row(org: str, request_id: str, created: float, **fields: object) -> RequestRow:
    values: dict[str, object] = {
        "request_id": request_id,
        "org_id": org,
        "created_unix_ms": created,
        "source": "proxy",
        "provider": "openai",
        "method": "POST",
        "target_url": "https://x/v1",
        "path": "/v1",
        "status": 200,
        "usage_source": "provider",
        "cost_source": "genai-prices",
        "latency_ms": 10.0,
        "request_headers": {"h": "v"},
    }
    values.update(fields)
    return RequestRow(**values)  # type: ignore[arg-type]


def test_session_calls_and_paths_are_the_organizations_own(pages_store: RecordsStore) -> None:
    a, b = pages_store.create_org("a"), pages_store.create_org("b")
    pages_store.write_batch(
        [
            _row(a, "1", 1000.0, session_id="s", session_path="/plan", cost_nano_usd=5),
            _row(a, "2", 2000.0, session_id="s", session_path="/plan/x", status=500),
            _row(a, "3", 3000.0, session_id="s", session_path="/plan/x", latency_ms=500.0),
            _row(a, "4", 4000.0, session_id="s"),
            _row(b, "9", 1500.0, session_id="s", session_path="/theirs"),
        ]
    )
    calls = pages_store.session_calls(a, "s", 3)
    assert [c.request_id for c in calls] == ["1", "2", "3"]
    paths = {p.path: p for p in pages_store.session_paths(a, "s")}
    assert set(paths) == {"", "/plan", "/plan/x"}
    assert paths["/plan/x"].requests == 2 and paths["/plan/x"].errors == 1
    assert paths["/plan/x"].end_unix_ms == 3500.0 and paths["/plan"].cost_nano_usd == 5
    assert pages_store.session_paths(b, "s")[0].path == "/theirs"
    assert pages_store.session_paths(a, "nope") == []


def test_revoking_another_organizations_key_is_refused(pages_store: RecordsStore) -> None:
    a, b = pages_store.create_org("a"), pages_store.create_org("b")
    a_id, _ = pages_store.create_key(a, "a")
    b_id, _ = pages_store.create_key(b, "b")
    assert pages_store.revoke_org_key(a, b_id) is None
    assert not pages_store.list_keys(b)[0].revoked
    key_hash = pages_store.revoke_org_key(a, a_id)
    assert key_hash is not None and len(key_hash) == 64
    first = pages_store.list_keys(a)[0].revoked_at
    assert pages_store.revoke_org_key(a, a_id) == key_hash  # twice keeps the first time
    assert pages_store.list_keys(a)[0].revoked_at == first


def test_export_pages_follow_the_keyset_without_headers(pages_store: RecordsStore) -> None:
    a, b = pages_store.create_org("a"), pages_store.create_org("b")
    pages_store.write_batch([_row(a, f"r{i}", float(i % 3), cost_nano_usd=i) for i in range(7)])
    pages_store.write_batch([_row(b, "theirs", 1.0)])
    seen: list[str] = []
    query = PageQuery(a, sort="created", descending=True, limit=3)
    while True:
        rows = pages_store.export_page(query)
        seen += [r["request_id"] for r in rows]
        assert all("request_headers" not in r for r in rows)
        if len(rows) < 3:
            break
        last = rows[-1]
        query = PageQuery(
            a, descending=True, limit=3, after=Position(last["created_unix_ms"], last["request_id"])
        )
    expected = [r.request_id for r in pages_store.reader.page(PageQuery(a, limit=100))]
    assert seen == expected and "theirs" not in seen
