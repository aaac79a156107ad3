"""The records store's dashboard tables and look-ups, on SQLite and Postgres: sessions (only the
token's hash is kept, expiry, sign-out, ending every session of a key) and the bounded property
name/value look-ups (scoped to one organization and one time range)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from llmtap.keys import hash_key
from llmtap.stores.records import RecordsStore
from llmtap.stores.records.engine import create_engine
from llmtap.stores.records.property_lookup import Lookup
from llmtap.stores.row import RequestRow

pytest_plugins = ["contract.test_records_store"]


@pytest.fixture
def dash_store(records_url: str) -> Iterator[RecordsStore]:
    store = RecordsStore(records_url)
    yield store
    store.close()


def test_a_session_is_found_by_its_token_and_only_its_hash_is_stored(
    dash_store: RecordsStore, records_url: str
) -> None:
    org = dash_store.create_org("acme")
    token, session = dash_store.sessions.create(hash_key("sk-llmtap-x"), org, ttl_s=60)
    found = dash_store.sessions.get(token)
    assert found is not None and found.org_id == org and found.csrf_token == session.csrf_token
    assert dash_store.sessions.get(token + "x") is None
    engine = create_engine(records_url)
    try:
        with engine.connect() as conn:
            stored = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM dashboard_sessions"))]
    finally:
        engine.dispose()
    assert len(stored) == 1
    assert not any(token in str(value) for value in stored[0])
    assert hashlib.sha256(token.encode()).hexdigest() in stored[0]


def test_expired_deleted_and_revoked_sessions_are_gone(dash_store: RecordsStore) -> None:
    org = dash_store.create_org("acme")
    short, _ = dash_store.sessions.create("k1", org, ttl_s=0.05)
    time.sleep(0.1)  # the expiry itself is what is tested: a time must pass
    assert dash_store.sessions.get(short) is None
    kept, _ = dash_store.sessions.create("k1", org, ttl_s=60)
    other, _ = dash_store.sessions.create("k2", org, ttl_s=60)
    dash_store.sessions.delete(other)
    assert dash_store.sessions.get(other) is None
    assert dash_store.sessions.delete_for_key("k1") == 1  # the expired row was swept on create
    assert dash_store.sessions.get(kept) is None


def _row(org: str, request_id: str, created: float, properties: dict[str, str]) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id=org,
        created_unix_ms=created,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
        properties=properties,
    )


def test_property_lookups_are_scoped_bounded_and_match_what_was_typed(
    dash_store: RecordsStore,
) -> None:
    a = dash_store.create_org("a")
    b = dash_store.create_org("b")
    rows = [
        _row(a, f"a{i}", 1000.0 + i, {"env": f"prod-{i % 30}", "team%_": "x"}) for i in range(60)
    ]
    rows.append(_row(a, "old", 10.0, {"ancient": "v"}))
    rows.append(_row(b, "b1", 1001.0, {"bravo-only": "secret", "env": "b-secret"}))
    dash_store.write_batch(rows)
    window = Lookup(org_id=a, start_unix_ms=500.0, end_unix_ms=5000.0)
    assert dash_store.property_names(window) == ["env", "team%_"]
    assert dash_store.property_names(Lookup(a, 500.0, 5000.0, contains="%_")) == ["team%_"]
    assert dash_store.property_names(Lookup(a, 500.0, 5000.0, contains="_")) == ["team%_"]
    assert dash_store.property_names(Lookup(a, 0.0, 5000.0, contains="anc")) == ["ancient"]
    values = dash_store.property_values(Lookup(a, 500.0, 5000.0, limit=20), "env")
    assert len(values) == 20 and values == sorted(values)
    assert "b-secret" not in values
    assert dash_store.property_values(Lookup(a, 500.0, 5000.0, contains="PROD-2"), "env") == [
        "prod-2",
        "prod-20",
        "prod-21",
        "prod-22",
        "prod-23",
        "prod-24",
        "prod-25",
        "prod-26",
        "prod-27",
        "prod-28",
        "prod-29",
    ]
    # only the newest scan_rows calls are read
    assert dash_store.property_names(Lookup(a, 0.0, 5000.0, scan_rows=5)) == ["env", "team%_"]
