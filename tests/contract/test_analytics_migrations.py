"""Analytics migrations on an existing data directory: a table made by an older llmtap gets the
new columns when a store opens, keeps its rows, and opening again changes nothing.

Runs on embedded chDB, and on a ClickHouse server too when ``LLMTAP_TEST_CLICKHOUSE_URL`` is set
(as tests/contract/test_analytics_store.py). chDB holds one directory per process: every client
is closed before the next opens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from test_analytics_store import _clickhouse_database

from llmtap.stores.analytics.client import ClickHouseClient
from llmtap.stores.analytics.ddl import COLUMN_TYPES, TABLE
from llmtap.stores.analytics.migrate import STEPS, VERSION_TABLE, migrate, schema_version
from llmtap.stores.analytics.store import AnalyticsStore
from llmtap.stores.row import RequestRow

T0 = 1_764_072_000_000.0  # 2025-11-25 12:00:00 UTC
OpenClient = Callable[[], ClickHouseClient]

# The analytics table exactly as llmtap created it before it had migrations (main, 2026-12-01):
# frozen here, never generated, so it stays what existing data directories hold.
FIRST_RELEASE_DDL = """
CREATE TABLE IF NOT EXISTS llmtap_requests
(
    org_id String,
    request_id String,
    created DateTime64(3, 'UTC'),
    version UInt64,
    source LowCardinality(String),
    provider LowCardinality(String),
    method LowCardinality(String),
    path String,
    status Int32,
    error Nullable(String),
    streamed Bool,
    model LowCardinality(Nullable(String)),
    response_model LowCardinality(Nullable(String)),
    endpoint LowCardinality(Nullable(String)),
    finish_reason LowCardinality(Nullable(String)),
    user_id Nullable(String),
    session_id Nullable(String),
    session_path Nullable(String),
    session_name Nullable(String),
    properties Map(String, String),
    usage_source LowCardinality(String),
    input_tokens Nullable(Int64),
    output_tokens Nullable(Int64),
    total_tokens Nullable(Int64),
    cache_read_tokens Nullable(Int64),
    cache_write_tokens Nullable(Int64),
    reasoning_tokens Nullable(Int64),
    audio_input_tokens Nullable(Int64),
    audio_output_tokens Nullable(Int64),
    cost_nano_usd Nullable(Int64),
    cost_source LowCardinality(String),
    latency_ms Float64,
    ttft_ms Nullable(Float64),
    upstream_headers_ms Nullable(Float64),
    request_size Int64,
    response_size Int64,
    trace_id Nullable(String)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(created)
ORDER BY (org_id, toStartOfHour(created), request_id)
"""


def _old_row(i: int) -> bytes:
    """A row as the first release's sink wrote it (its columns only)."""
    return json.dumps(
        {
            "org_id": "org_a",
            "request_id": f"old-{i}",
            "created": (T0 + i) / 1000.0,
            "version": 1,
            "source": "proxy",
            "provider": "openai",
            "method": "POST",
            "path": "/v1/chat/completions",
            "status": 200,
            "streamed": False,
            "model": "gpt-4o-mini",
            "properties": {"feature": "chat"},
            "usage_source": "provider",
            "input_tokens": i,
            "cost_nano_usd": 1000 * i,
            "cost_source": "genai-prices",
            "latency_ms": 10.0 + i,
            "request_size": 100,
            "response_size": 200,
        }
    ).encode()


def _new_row(request_id: str, attempts: int | None) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id="org_a",
        created_unix_ms=T0 + 100,
        source="proxy",
        provider="openai",
        method="GET",
        target_url="https://api.openai.com/v1/models",
        path="/v1/models",
        status=200,
        attempts=attempts,
    )


@pytest.fixture(params=["chdb", pytest.param("clickhouse", marks=pytest.mark.clickhouse)])
def open_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenClient]:
    """A function opening a new client on the same database each time it is called."""
    if request.param == "chdb":
        from llmtap.stores.analytics.chdb_client import ChdbClient

        path = tmp_path / "analytics"
        yield lambda: ChdbClient(path)
        return
    from llmtap.stores.analytics.clickhouse_client import ClickHouseHttpClient

    for url in _clickhouse_database():
        yield partial(ClickHouseHttpClient, url)


def _describe(client: ClickHouseClient) -> dict[str, str]:
    return {r["name"]: r["type"] for r in client.query_rows(f"DESCRIBE TABLE {TABLE}", {})}


def _versions(client: ClickHouseClient) -> list[int]:
    rows = client.query_rows(f"SELECT version FROM {VERSION_TABLE} ORDER BY version", {})
    return [int(r["version"]) for r in rows]


def test_an_old_table_gets_the_new_columns_and_keeps_its_rows(open_client: OpenClient) -> None:
    client = open_client()
    try:
        client.command(FIRST_RELEASE_DDL)
        client.insert_json_each_row(TABLE, b"\n".join(_old_row(i) for i in range(5)))
        assert "attempts" not in _describe(client)
    finally:
        client.close()

    client = open_client()
    store = AnalyticsStore(client)  # what the consumer and the API do at start
    try:
        assert _describe(client) == COLUMN_TYPES
        assert schema_version(client) == STEPS[-1].version
        old = client.query_rows(
            f"SELECT request_id, input_tokens, cost_nano_usd, latency_ms, properties, attempts"
            f" FROM {TABLE} FINAL WHERE request_id LIKE 'old-%' ORDER BY request_id",
            {},
        )
        assert old == [
            {
                "request_id": f"old-{i}",
                "input_tokens": i,
                "cost_nano_usd": 1000 * i,
                "latency_ms": 10.0 + i,
                "properties": {"feature": "chat"},
                "attempts": None,  # not known for calls logged before
            }
            for i in range(5)
        ]
        store.write_batch([_new_row("new-1", 1), _new_row("new-2", 2)])
        new = client.query_rows(
            f"SELECT request_id, attempts FROM {TABLE} FINAL"
            " WHERE request_id LIKE 'new-%' ORDER BY request_id",
            {},
        )
        assert new == [
            {"request_id": "new-1", "attempts": 1},
            {"request_id": "new-2", "attempts": 2},
        ]
    finally:
        store.close()

    # opening again: nothing to apply, nothing recorded twice, nothing lost
    client = open_client()
    try:
        before = _versions(client)
        assert migrate(client) == []
        assert _versions(client) == before == [step.version for step in STEPS]
        assert _describe(client) == COLUMN_TYPES
        [count] = client.query_rows(f"SELECT count() AS n FROM {TABLE} FINAL", {})
        assert int(count["n"]) == 7
    finally:
        client.close()


def test_a_new_table_is_created_whole_and_marked_current(open_client: OpenClient) -> None:
    client = open_client()
    try:
        assert migrate(client) == [step.version for step in STEPS]
        assert _describe(client) == COLUMN_TYPES
        assert migrate(client) == []
        assert _versions(client) == [step.version for step in STEPS]
    finally:
        client.close()


def test_steps_are_numbered_in_order() -> None:
    assert [step.version for step in STEPS] == list(range(1, len(STEPS) + 1))
