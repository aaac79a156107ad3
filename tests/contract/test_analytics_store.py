"""The analytics store contract on embedded chDB, and on a ClickHouse server when one is given.

No ClickHouse server runs on these machines: set ``LLMTAP_TEST_CLICKHOUSE_URL``
(``clickhouse://user:pw@host:8123``) to run the contract against one too; each test then works
in a database of its own. chDB holds one data directory per process, so every test closes its
store before the next opens.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtap.errors import StoreUnavailable
from llmtap.stores.analytics import AnalyticsStore, Metrics, MetricsQuery
from llmtap.stores.factory import open_analytics_store
from llmtap.stores.filter import FilterError, Leaf
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows, Sink

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
T0 = 1_764_072_000_000.0  # 2025-11-25 12:00:00 UTC


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "analytics"


CLICKHOUSE_URL = os.environ.get("LLMTAP_TEST_CLICKHOUSE_URL", "")


def _clickhouse_database() -> Iterator[str]:
    from urllib.parse import urlsplit

    import clickhouse_connect

    parts = urlsplit(CLICKHOUSE_URL)
    admin = clickhouse_connect.get_client(
        host=parts.hostname,
        port=parts.port or 8123,
        username=parts.username or "default",
        password=parts.password or "",
    )
    database = f"llmtap_test_{secrets.token_hex(6)}"
    admin.command(f"CREATE DATABASE {database}")
    try:
        yield f"{CLICKHOUSE_URL.split('?')[0].rstrip('/')}/{database}"
    finally:
        admin.command(f"DROP DATABASE {database}")
        admin.close()


@pytest.fixture(params=["chdb", pytest.param("clickhouse", marks=pytest.mark.clickhouse)])
def store(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[AnalyticsStore]:
    if request.param == "chdb":
        opened = open_analytics_store(f"chdb:///{data_dir}")
        yield opened
        opened.close()
        return
    for url in _clickhouse_database():
        opened = open_analytics_store(url)
        yield opened
        opened.close()


def row(
    request_id: str, org_id: str = "org_a", created: float = T0, **fields: object
) -> RequestRow:
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
        "model": "gpt-4o-mini",
        "usage_source": "provider",
        "input_tokens": 10,
        "output_tokens": 20,
        "total_tokens": 30,
        "cost_nano_usd": 1_000,
        "cost_source": "genai-prices",
        "latency_ms": 100.0,
        "ttft_ms": 40.0,
        "properties": {"feature": "chat"},
    }
    values.update(fields)
    return RequestRow(**values)  # type: ignore[arg-type]


def test_analytics_store_is_a_sink(store: AnalyticsStore) -> None:
    sink: Sink = store
    assert sink.name == "analytics"


def totals(store: AnalyticsStore, org_id: str = "org_a", **query: Any) -> Metrics:
    """The metrics the API asks for, over a day either side of ``T0`` unless told otherwise."""
    query.setdefault("start_unix_ms", T0 - DAY_MS)
    query.setdefault("end_unix_ms", T0 + DAY_MS)
    return store.metrics(MetricsQuery(org_id, **query)).totals


def test_replayed_batches_are_counted_once_without_waiting_for_merges(
    store: AnalyticsStore,
) -> None:
    batch = [row(f"req-{i}", input_tokens=i, cost_nano_usd=i * 1_000) for i in range(100)]
    for _ in range(3):
        store.write_batch(batch)
    summary = totals(store)
    assert summary.requests == 100
    assert summary.tokens["input"] == sum(range(100))
    assert summary.cost_nano_usd == sum(range(100)) * 1_000


def test_the_newest_copy_of_a_row_wins(store: AnalyticsStore) -> None:
    store.write_batch([row("req-1", cost_nano_usd=None, cost_source="unpriced")])
    store.write_batch([row("req-1", cost_nano_usd=5_000)])  # reprocessed with a price
    summary = totals(store)
    assert (summary.requests, summary.cost_nano_usd, summary.unpriced_requests) == (1, 5_000, 0)


def test_totals_count_errors_unpriced_latency_and_users(store: AnalyticsStore) -> None:
    store.write_batch(
        [
            row("ok-1", latency_ms=100.0, ttft_ms=10.0, user_id="ann"),
            row("ok-2", latency_ms=200.0, ttft_ms=30.0, user_id="ann"),
            row("ok-3", latency_ms=300.0, ttft_ms=None, cost_nano_usd=None, user_id="bob"),
            row("fail-1", status=500, latency_ms=50.0, input_tokens=None, output_tokens=None),
            row("fail-2", status=200, error="client_disconnected", latency_ms=60.0),
        ]
    )
    s = totals(store)
    assert (s.requests, s.errors, s.priced_requests, s.unpriced_requests) == (5, 2, 4, 1)
    assert s.tokens["input"] == 40 and s.tokens["output"] == 80
    assert s.cost_nano_usd == 4_000  # the unpriced call adds nothing, and is counted apart
    # exact quantiles: the value at floor(level * n) of the sorted values
    assert s.latency_ms == {"p50": 100.0, "p90": 300.0, "p95": 300.0, "p99": 300.0}
    assert s.ttft_ms == {"p50": 40.0, "p90": 40.0, "p95": 40.0, "p99": 40.0}
    assert s.active_users == 2


def test_empty_totals_have_no_latency(store: AnalyticsStore) -> None:
    s = totals(store, "org_nobody")
    assert (s.requests, s.cost_nano_usd, s.active_users) == (0, 0, 0)
    assert set(s.latency_ms.values()) == set(s.ttft_ms.values()) == {None}


def test_queries_see_only_the_callers_organization(store: AnalyticsStore) -> None:
    store.write_batch(
        [row("same-id", "org_a"), row("same-id", "org_b", cost_nano_usd=7), row("a-2", "org_a")]
    )
    assert totals(store, "org_a").requests == 2
    assert totals(store, "org_b").cost_nano_usd == 7
    by_model = store.metrics(MetricsQuery("org_b", T0 - DAY_MS, T0 + DAY_MS, group_by="model"))
    assert [(m.group, m.requests) for m in by_model.series] == [("gpt-4o-mini", 1)]


def test_time_range_and_buckets(store: AnalyticsStore) -> None:
    store.write_batch(
        [
            row("h0-a", created=T0 + 1),
            row("h0-b", created=T0 + HOUR_MS - 1),
            row("h2-a", created=T0 + 2 * HOUR_MS + 5, status=429),
            row("h5-a", created=T0 + 5 * HOUR_MS),
        ]
    )
    hourly = store.metrics(MetricsQuery("org_a", T0, T0 + 5 * HOUR_MS, bucket_s=3600))
    assert hourly.totals.requests == 3  # the end is exclusive
    assert [(m.bucket_start_unix_ms, m.requests, m.errors) for m in hourly.series] == [
        (int(T0), 2, 0),
        (int(T0 + 2 * HOUR_MS), 1, 1),
    ]
    assert totals(store, start_unix_ms=T0 + HOUR_MS).requests == 2


def test_group_by_column_and_property(store: AnalyticsStore) -> None:
    store.write_batch(
        [
            row("r1", model="gpt-4o", properties={"feature": "search"}),
            row("r2", model="gpt-4o", properties={"feature": "chat"}),
            row("r3", model="claude-sonnet-4", properties={}),
        ]
    )
    day = (T0 - DAY_MS, T0 + DAY_MS)
    by_model = store.metrics(MetricsQuery("org_a", *day, group_by="model")).series
    assert [(m.group, m.requests, m.tokens["input"]) for m in by_model] == [
        ("claude-sonnet-4", 1, 10),
        ("gpt-4o", 2, 20),
    ]
    by_feature = store.metrics(MetricsQuery("org_a", *day, group_by="property:Feature")).series
    assert {m.group: m.requests for m in by_feature} == {"search": 1, "chat": 1, None: 1}
    with pytest.raises(FilterError):
        store.metrics(MetricsQuery("org_a", *day, group_by="model; DROP TABLE llmtap_requests"))


def test_filters_choose_the_calls_and_text_in_bodies_is_refused(store: AnalyticsStore) -> None:
    store.write_batch([row("r1", model="gpt-4o"), row("r2", properties={"feature": "x"})])
    prop = Leaf("properties.feature", "eq", "x", "str")
    assert totals(store, filter=prop).requests == 1
    with pytest.raises(FilterError):
        totals(store, filter=Leaf("body", "contains", "refund", "text"))


def test_rows_that_do_not_fit_are_poison_and_the_rest_stored(store: AnalyticsStore) -> None:
    with pytest.raises(PoisonRows) as caught:
        store.write_batch([row("good-1"), row("huge", cost_nano_usd=2**70), row("good-2")])
    assert set(caught.value.reasons) == {"huge"}
    assert totals(store).requests == 2


def test_big_batch_in_one_insert(store: AnalyticsStore) -> None:
    store.write_batch([row(f"req-{i}", created=T0 + i) for i in range(20_000)])
    assert totals(store).requests == 20_000


def test_data_survive_a_restart(data_dir: Path) -> None:
    first = open_analytics_store(f"chdb:///{data_dir}")
    first.write_batch([row("req-1"), row("req-2")])
    first.close()
    second = open_analytics_store(f"chdb:///{data_dir}")
    assert totals(second).requests == 2
    second.close()


def test_a_second_process_on_the_same_directory_is_refused(
    store: AnalyticsStore, data_dir: Path
) -> None:
    code = (
        "import sys\n"
        "from llmtap.errors import StoreUnavailable\n"
        "from llmtap.stores.factory import open_analytics_store\n"
        "try:\n"
        "    open_analytics_store('chdb:///' + sys.argv[1])\n"
        "except StoreUnavailable:\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], capture_output=True, timeout=120
    )
    assert done.returncode == 3, done.stderr.decode()[-2000:]


def test_clickhouse_server_away_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(StoreUnavailable) as caught:
        open_analytics_store(f"clickhouse://default:@127.0.0.1:{closed_port}/default")
    assert caught.value.retriable


def test_retention_drops_expired_rows_and_sets_the_ttl(tmp_path: Path) -> None:
    """Rows older than ``analytics_retention_days`` are gone after the sink's prune, whatever
    the engine's merge schedule; a reader opening the store leaves the retention alone."""
    url = f"chdb:///{tmp_path / 'analytics'}"
    day_ms = 24 * 3600 * 1000.0
    now_ms = time.time() * 1000.0
    old = _retention_row("old", now_ms - 40 * day_ms)
    recent = _retention_row("recent", now_ms - 1 * day_ms)
    store = open_analytics_store(url, retention_days=30)
    try:
        store.write_batch([old, recent])  # the first write after start prunes
        store.write_batch([old])  # a late redelivery of an expired row: pruned next time
        store.prune()
        assert totals(store, "org", start_unix_ms=0, end_unix_ms=now_ms + day_ms).requests == 1
        create = store.table_definition()
        assert "TTL" in create and "30" in create
    finally:
        store.close()
    reader = open_analytics_store(url)
    try:
        create = reader.table_definition()
        assert "TTL" in create
    finally:
        reader.close()


def _retention_row(request_id: str, created_unix_ms: float) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id="org",
        created_unix_ms=created_unix_ms,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
    )
