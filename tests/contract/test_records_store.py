"""The records store contract, on SQLite and on a real Postgres server.

Each Postgres test runs in a schema of its own (dropped afterwards), so runs never collide.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from llmtap.errors import StoreError, StoreUnavailable
from llmtap.keys import hash_key
from llmtap.stores.records import RecordsStore
from llmtap.stores.records.engine import create_engine
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows, Sink
from support.relay import TcpRelay

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    # marked tests only run when Postgres accepts connections (tests/conftest.py): any error
    # here is a real failure, never a skip
    url = make_url(PG_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
        connect_timeout=3,
    )


def _with_search_path(url: str, schema: str, **replace: object) -> str:
    parsed = make_url(url).set(**replace)  # type: ignore[arg-type]
    parsed = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = f"t_{secrets.token_hex(6)}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield schema
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.db'}"
    schema = request.getfixturevalue("pg_schema")
    return _with_search_path(PG_URL, schema)


@pytest.fixture
def store(records_url: str) -> Iterator[RecordsStore]:
    store = RecordsStore(records_url)
    yield store
    store.close()


def make_row(request_id: str, org_id: str, created: float, **fields: object) -> RequestRow:
    values: dict[str, object] = {
        "request_id": request_id,
        "org_id": org_id,
        "created_unix_ms": created,
        "source": "proxy",
        "provider": "openai",
        "method": "POST",
        "target_url": "https://api.openai.com/v1/chat/completions",
        "path": "/v1/chat/completions",
        "status": 200,
        "streamed": True,
        "model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "endpoint": "chat.completions",
        "finish_reason": "stop",
        "user_id": "alice",
        "session_id": "s-1",
        "session_path": "/plan/step",
        "session_name": "planner",
        "properties": {"env": "prod", "feature": "sümmary ✓"},
        "usage_source": "provider",
        "input_tokens": 12,
        "output_tokens": 30,
        "total_tokens": 42,
        "cache_read_tokens": 4,
        "reasoning_tokens": 0,
        "cost_nano_usd": 3_000_000_123,
        "cost_source": "genai-prices",
        "latency_ms": 812.25,
        "ttft_ms": 95.5,
        "upstream_headers_ms": 90.125,
        "request_size": 321,
        "response_size": 4567,
        "request_body_key": f"{org_id}/{request_id[:2]}/{request_id}/request",
        "response_body_key": f"{org_id}/{request_id[:2]}/{request_id}/response",
        "request_headers": {"content-type": "application/json"},
        "response_headers": {"x-request-id": "req_123"},
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
    }
    values.update(fields)
    return RequestRow(**values)  # type: ignore[arg-type]


def test_records_store_is_a_sink(store: RecordsStore) -> None:
    sink: Sink = store
    assert sink.name == "records"


def test_rows_read_back_exactly_as_written(store: RecordsStore) -> None:
    org = store.default_org_id()
    rows = [make_row(f"req-{i:03d}", org, 1_700_000_000_000.5 + i) for i in range(20)]
    rows.append(make_row("req-bare", org, 1_700_000_000_100.0, input_tokens=None, model=None))
    store.write_batch(rows)
    for row in rows:
        assert store.get_request(org, row.request_id) == row


def test_same_batch_three_times_stores_each_row_once(store: RecordsStore) -> None:
    org = store.default_org_id()
    rows = [make_row(f"req-{i:03d}", org, 1_700_000_000_000.0 + i) for i in range(50)]
    for _ in range(3):
        store.write_batch(rows)
    assert store.count_requests(org) == 50
    assert store.recent_requests(org, 100) == sorted(
        rows, key=lambda r: r.created_unix_ms, reverse=True
    )


def test_redelivered_row_replaces_the_stored_one(store: RecordsStore) -> None:
    org = store.default_org_id()
    store.write_batch([make_row("req-1", org, 1.0, status=502, error="upstream_timeout")])
    store.write_batch([make_row("req-1", org, 1.0, status=200)])
    stored = store.get_request(org, "req-1")
    assert stored is not None
    assert (stored.status, stored.error) == (200, None)
    assert store.count_requests(org) == 1


def test_same_id_twice_in_one_batch_keeps_the_last(store: RecordsStore) -> None:
    org = store.default_org_id()
    store.write_batch([make_row("req-1", org, 1.0, status=500), make_row("req-1", org, 1.0)])
    stored = store.get_request(org, "req-1")
    assert stored is not None and stored.status == 200


def test_poison_rows_are_named_and_the_others_stored(store: RecordsStore) -> None:
    org = store.default_org_id()
    good = [make_row(f"good-{i}", org, float(i)) for i in range(4)]
    negative = make_row("bad-negative", org, 10.0, output_tokens=-5)
    too_big = make_row("bad-overflow", org, 11.0, cost_nano_usd=2**70)
    # a handler bug: a value the JSON column cannot hold, refused before the server sees it
    unencodable = make_row("bad-json", org, 12.0, properties={"when": object()})
    with pytest.raises(PoisonRows) as caught:
        store.write_batch([good[0], negative, good[1], unencodable, good[2], too_big, good[3]])
    assert set(caught.value.reasons) == {"bad-negative", "bad-overflow", "bad-json"}
    assert not caught.value.retriable
    assert "ck_requests_tokens_not_negative" in caught.value.reasons["bad-negative"]
    assert [r.request_id for r in store.recent_requests(org, 10)] == [
        "good-3",
        "good-2",
        "good-1",
        "good-0",
    ]
    # the consumer retries the rest after dead-lettering the poison: still one row each
    store.write_batch(good)
    assert store.count_requests(org) == 4


# COPY's text format (Postgres batches go through it) gives tab, newline, backslash and ``\N``
# meanings of their own: each must come back as the character it was, in every kind of column.
AWKWARD = [
    "tab\there",
    "line\nbreak\r\n",
    "back\\slash",
    "\\N",
    "\\.",
    "",
    "'quote\"",
    "sümmary ✓ \u2028",
]


def test_awkward_text_in_a_batch_reads_back_exactly(store: RecordsStore) -> None:
    org = store.default_org_id()
    rows = [
        make_row(
            f"odd-{i}\t{text}",
            org,
            float(i),
            user_id=text,
            error=text or None,
            properties={text: text, "k": "\\N"},
            request_headers={"x-odd": text},
            record_digest=f"d{i}",
        )
        for i, text in enumerate(AWKWARD)
    ]
    for _ in range(2):  # the second time as updates of the stored rows
        store.write_batch(rows)
        for row in rows:
            assert store.get_request(org, row.request_id) == row
    assert store.count_requests(org) == len(AWKWARD)


def test_a_nul_in_a_batch_poisons_its_row_only_and_the_next_batch_goes_in(
    store: RecordsStore,
) -> None:
    org = store.default_org_id()
    good = [make_row(f"good-{i}", org, float(i)) for i in range(3)]
    nul = make_row("bad-nul", org, 9.0, user_id="a\x00b")
    if store.dialect == "sqlite":
        pytest.skip("SQLite stores a NUL")
    with pytest.raises(PoisonRows) as caught:
        store.write_batch([good[0], nul, good[1]])
    assert set(caught.value.reasons) == {"bad-nul"}
    store.write_batch(good)
    assert {r.request_id for r in store.recent_requests(org, 10)} >= {g.request_id for g in good}


def test_reads_are_filtered_by_organization(store: RecordsStore) -> None:
    acme, globex = store.create_org("acme"), store.create_org("globex")
    store.write_batch(
        [
            make_row("shared-id", acme, 1.0, user_id="acme-user"),
            make_row("shared-id", globex, 2.0, user_id="globex-user"),
            make_row("acme-only", acme, 3.0),
        ]
    )
    acme_row = store.get_request(acme, "shared-id")
    globex_row = store.get_request(globex, "shared-id")
    assert acme_row is not None and acme_row.user_id == "acme-user"
    assert globex_row is not None and globex_row.user_id == "globex-user"
    assert store.get_request(globex, "acme-only") is None
    assert {r.request_id for r in store.recent_requests(globex, 10)} == {"shared-id"}
    assert [(r.org_id, r.request_id) for r in store.recent_requests(acme, 10)] == [
        (acme, "acme-only"),
        (acme, "shared-id"),
    ]
    assert len(store.recent_requests(None, 10)) == 3  # the local admin CLI sees everything


def test_recent_requests_newest_first_with_paging_and_filters(store: RecordsStore) -> None:
    org = store.default_org_id()
    rows = [
        make_row(f"req-{i}", org, 1000.0 + i, model="a" if i % 2 else "b", user_id=f"u{i % 3}")
        for i in range(10)
    ]
    store.write_batch(rows)
    first = store.recent_requests(org, 4)
    assert [r.request_id for r in first] == ["req-9", "req-8", "req-7", "req-6"]
    second = store.recent_requests(org, 4, before_unix_ms=first[-1].created_unix_ms)
    assert [r.request_id for r in second] == ["req-5", "req-4", "req-3", "req-2"]
    assert [r.request_id for r in store.recent_requests(org, 3, model="a")] == [
        "req-9",
        "req-7",
        "req-5",
    ]
    assert {r.request_id for r in store.recent_requests(org, 10, user_id="u0")} == {
        "req-0",
        "req-3",
        "req-6",
        "req-9",
    }


def test_keys_resolve_to_their_org_until_revoked(store: RecordsStore) -> None:
    org = store.create_org("acme")
    other = store.create_org("globex")
    key_id, key = store.create_key(org, "ci")
    _, other_key = store.create_key(other, "ci")
    assert store.org_for_key_hash(hash_key(key)) == org
    assert store.org_for_key_hash(hash_key(f"Bearer {key}")) == org
    assert store.org_for_key_hash(hash_key(other_key)) == other
    assert store.org_for_key_hash(hash_key("sk-llmtap-never-issued")) is None

    [listed] = store.list_keys(org)
    assert (listed.id, listed.name, listed.revoked) == (key_id, "ci", False)
    assert key.startswith(listed.prefix) and len(listed.prefix) < len(key)
    assert key not in repr(listed) and hash_key(key) not in repr(listed)

    assert store.revoke_key(key_id) is True
    assert store.org_for_key_hash(hash_key(key)) is None
    assert store.org_for_key_hash(hash_key(other_key)) == other
    [revoked] = store.list_keys(org)
    assert revoked.revoked and revoked.revoked_at is not None
    assert revoked.revoked_at.tzinfo is not None
    assert store.revoke_key(key_id) is True  # revoking again is harmless
    assert store.revoke_key("key_nonexistent") is False


def test_key_for_an_unknown_org_is_refused(store: RecordsStore) -> None:
    with pytest.raises(StoreError):
        store.create_key("org_nonexistent", "ci")


def test_default_org_is_stable_across_restarts(records_url: str) -> None:
    first = RecordsStore(records_url)
    org = first.default_org_id()
    assert first.default_org_id() == org
    first.close()
    second = RecordsStore(records_url)  # migrations run again: nothing to do
    assert second.default_org_id() == org
    assert [o.id for o in second.list_orgs()] == [org]
    second.close()


# -- outages ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_outage_is_unavailable_then_recovers(pg_schema: str) -> None:
    target = make_url(PG_URL)
    relay = TcpRelay((target.host or "127.0.0.1", target.port or 5432))
    relay.start()
    url = _with_search_path(PG_URL, pg_schema, host="127.0.0.1", port=relay.port)
    store = RecordsStore(url)
    org = store.default_org_id()
    store.write_batch([make_row("before", org, 1.0)])

    relay.cut()
    with pytest.raises(StoreUnavailable) as caught:
        store.write_batch([make_row("during", org, 2.0)])
    assert caught.value.retriable
    with pytest.raises(StoreUnavailable):
        store.get_request(org, "before")

    relay.start()  # the server is back on the same address
    store.write_batch([make_row("during", org, 2.0)])
    assert [r.request_id for r in store.recent_requests(org, 10)] == ["during", "before"]
    store.close()
    relay.cut()


@pytest.mark.postgres
def test_postgres_lost_in_the_middle_of_a_batch_is_unavailable_then_recovers(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the connection dies after the ids are settled, while the batch's rows are copied in
    from llmtap.stores.records import upsert

    target = make_url(PG_URL)
    relay = TcpRelay((target.host or "127.0.0.1", target.port or 5432))
    relay.start()
    store = RecordsStore(_with_search_path(PG_URL, pg_schema, host="127.0.0.1", port=relay.port))
    org = store.default_org_id()
    rows = [make_row(f"req-{i}", org, float(i), record_digest=f"d{i}") for i in range(5)]
    real_settle = upsert.settle

    def settle_then_cut(conn: object, batch: list[RequestRow]) -> None:
        real_settle(conn, batch)  # type: ignore[arg-type]
        relay.cut()

    monkeypatch.setattr(upsert, "settle", settle_then_cut)
    with pytest.raises(StoreUnavailable) as caught:
        store.write_batch(rows)
    assert caught.value.retriable

    monkeypatch.setattr(upsert, "settle", real_settle)
    relay.start()
    store.write_batch(rows)
    store.write_batch(rows)
    assert store.count_requests(org) == 5
    assert all(store.get_request(org, r.request_id) == r for r in rows)
    store.close()
    relay.cut()


@pytest.mark.postgres
def test_postgres_not_there_at_start_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = make_url(PG_URL).set(host="127.0.0.1", port=closed_port)
    with pytest.raises(StoreUnavailable):
        RecordsStore(url.render_as_string(hide_password=False))


def test_sqlite_locked_by_another_writer_is_unavailable_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    store = RecordsStore(f"sqlite:///{path}?timeout=0.2")
    org = store.default_org_id()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreUnavailable) as caught:
        store.write_batch([make_row("during", org, 1.0)])
    assert caught.value.retriable
    other.execute("COMMIT")
    other.close()
    store.write_batch([make_row("during", org, 1.0)])
    assert store.count_requests(org) == 1
    store.close()


@pytest.mark.parametrize("immediate", [False, True])
def test_a_sqlite_timeout_in_the_url_is_the_one_used(tmp_path: Path, immediate: bool) -> None:
    """The writer's own 60 s default (migrations and batches wait their turn) gave way to the
    URL's ``?timeout=`` only for readers: an operator's shorter wait was silently 60 s."""
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}?timeout=0.2", immediate=immediate)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200
    finally:
        engine.dispose()


# -- request ids claimed by a different call (docs/decisions/2026-12-01-request-id-collisions.md)


def test_a_different_record_claiming_a_stored_id_is_kept_beside_it(store: RecordsStore) -> None:
    org = store.default_org_id()
    first = make_row("req-1", org, 1.0, user_id="first", record_digest="d1")
    store.write_batch([first])
    for _ in range(2):  # the newcomer's own redelivery lands on the same fresh row
        store.write_batch([make_row("req-1", org, 2.0, user_id="second", record_digest="d2")])
    store.write_batch([make_row("req-1", org, 1.0, user_id="first", record_digest="d1")])

    assert store.get_request(org, "req-1") == first
    rows = store.recent_requests(org, 10)
    assert len(rows) == 2
    newcomer = rows[0]
    assert newcomer.user_id == "second" and newcomer.request_id != "req-1"
    assert newcomer.properties["llmtap-claimed-request-id"] == "req-1"


def test_different_records_with_one_id_in_one_batch_first_owns_it(store: RecordsStore) -> None:
    org = store.default_org_id()
    a = make_row("req-1", org, 1.0, user_id="a", record_digest="da")
    b = make_row("req-1", org, 2.0, user_id="b", record_digest="db")
    c = make_row("req-1", org, 3.0, user_id="c", record_digest="dc")
    store.write_batch([a, b, c])
    assert b.request_id != "req-1" and c.request_id not in ("req-1", b.request_id)
    again = [make_row("req-1", org, t, user_id=u, record_digest="d" + u) for t, u in ((1, "a"),)]
    again += [make_row("req-1", org, 3.0, user_id="c", record_digest="dc")]
    store.write_batch(again)  # redelivered in another grouping: the same rows
    assert again[1].request_id == c.request_id
    stored = {r.user_id: r for r in store.recent_requests(org, 10)}
    assert set(stored) == {"a", "b", "c"}
    assert stored["a"].request_id == "req-1"
    assert stored["b"].properties["llmtap-claimed-request-id"] == "req-1"


def test_a_row_stored_before_digests_is_adopted_by_its_record(store: RecordsStore) -> None:
    org = store.default_org_id()
    store.write_batch([make_row("req-1", org, 1.0, status=502)])
    store.write_batch([make_row("req-1", org, 1.0, status=200, record_digest="d1")])
    stored = store.get_request(org, "req-1")
    assert stored is not None and (stored.status, stored.record_digest) == (200, "d1")
    assert store.count_requests(org) == 1


def test_an_id_claimed_between_settle_and_upsert_is_settled_again(
    store: RecordsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer (a second consumer during a rebalance) stores req-1 after this batch looked
    # its ids up: the first settle sees req-1 free, the upsert's WHERE refuses the row, and the
    # batch must notice (from the row count: the other row of the batch is written) and redo.
    from llmtap.stores.records import upsert

    org = store.default_org_id()
    first = make_row("req-1", org, 1.0, user_id="first", record_digest="d1")
    store.write_batch([first])
    settles: list[int] = []
    real_settle = upsert.settle

    def settle_against_an_older_state(conn: object, rows: list[RequestRow]) -> None:
        settles.append(len(rows))
        if len(settles) > 1:
            real_settle(conn, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(upsert, "settle", settle_against_an_older_state)
    newcomer = make_row("req-1", org, 2.0, user_id="second", record_digest="d2")
    other = make_row("req-2", org, 3.0, user_id="other", record_digest="d3")
    store.write_batch([newcomer, other])

    assert len(settles) == 2
    assert store.get_request(org, "req-1") == first
    assert newcomer.request_id != "req-1"
    assert store.get_request(org, newcomer.request_id) == newcomer
    assert store.get_request(org, "req-2") == other
    assert store.count_requests(org) == 3
