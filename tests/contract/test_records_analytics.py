"""The analytics queries answered by Postgres's records table (``RecordsAnalytics``) give every
figure the embedded analytics store (chDB) gives for the same calls: metrics totals, series by
bucket and by each group key, filters, the Overview's panels and the session and user pages.

The same rows go into chDB (and a ClickHouse server when ``LLMTAP_TEST_CLICKHOUSE_URL`` names
one; skipped otherwise) and into a Postgres schema of the test's own; every query result is
compared whole (counts, sums, costs, percentiles, distinct users, keys and order), so a figure
that drifts in either engine fails here. Percentiles are equal, not close: both take the value
at index ``floor(level * n)`` of the sorted values (chDB's ``quantilesExact``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from test_analytics_store import _clickhouse_database

from llmtap.demo.seed import Seeder, SeedPlan
from llmtap.stores.analytics.groups import GROUP_SORTS, GroupAfter, GroupQuery
from llmtap.stores.analytics.metrics import MetricsQuery
from llmtap.stores.analytics.store import AnalyticsStore
from llmtap.stores.factory import open_analytics_store
from llmtap.stores.filter import Branch, FilterError, Leaf
from llmtap.stores.records.analytics import RecordsAnalytics
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from support.api_backend import postgres_schema

pytestmark = pytest.mark.postgres

NOW = 1_764_072_000_000.0
HOUR_MS = 3_600_000.0
DAY_MS = 24 * HOUR_MS


def _rows() -> list[RequestRow]:
    seeder = Seeder(SeedPlan(rows=1500, days=2, users=60), "org_a", NOW)
    calls = list(seeder.calls())
    rows = [r for i in range(0, len(calls), 500) for r in seeder.rows(calls[i : i + 500], None)]
    rng = random.Random(7)
    varied: list[RequestRow] = []
    for i, row in enumerate(rows):
        # the edges a figure can trip on: no user, no price, no model, no TTFT, odd statuses,
        # another organization, fractions of a millisecond, a property present but empty
        changes: dict[str, object] = {"created_unix_ms": row.created_unix_ms + rng.random()}
        pick = rng.random()
        if pick < 0.05:
            changes["user_id"] = None
        elif pick < 0.1:
            changes["cost_nano_usd"] = None
        elif pick < 0.13:
            changes.update(model=None, response_model=None, cost_nano_usd=None)
        elif pick < 0.2:
            changes["ttft_ms"] = None
        elif pick < 0.23:
            changes.update(status=0, error="upstream unreachable")
        elif pick < 0.26:
            changes["properties"] = {**row.properties, "feature": ""}
        if i % 11 == 0:
            changes["org_id"] = "org_b"
        varied.append(msgspec.structs.replace(row, **changes))
    return varied


@pytest.fixture(
    scope="module", params=["chdb", pytest.param("clickhouse", marks=pytest.mark.clickhouse)]
)
def reference(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnalyticsStore]:
    """The analytics store the records store must agree with: chDB, and a ClickHouse server
    when ``LLMTAP_TEST_CLICKHOUSE_URL`` names one."""
    if request.param == "chdb":
        store = open_analytics_store(f"chdb://{tmp_path_factory.mktemp('chdb') / 'analytics'}")
        yield store
        store.close()
        return
    for url in _clickhouse_database():
        store = open_analytics_store(url)
        yield store
        store.close()


@pytest.fixture(scope="module")
def engines(
    reference: AnalyticsStore, postgres_url: str
) -> Iterator[tuple[AnalyticsStore, RecordsAnalytics]]:
    rows = _rows()
    with postgres_schema(postgres_url) as url:
        records = RecordsStore(url)
        pg = RecordsAnalytics(url)
        try:
            for i in range(0, len(rows), 500):
                records.write_batch(rows[i : i + 500])
                reference.write_batch(rows[i : i + 500])
            yield reference, pg
        finally:
            pg.close()
            records.close()


START, END = NOW - 3 * DAY_MS, NOW + HOUR_MS
FILTERS = [
    None,
    Leaf("model", "eq", "gpt-4o-mini", "str"),
    Leaf("status", "gte", 400, "int"),
    Leaf("latency_ms", "gt", 800.0, "float"),
    Leaf("properties.feature", "exists", True, "str"),
    Branch("or", (Leaf("user_id", "exists", False, "str"), Leaf("ttft_ms", "lt", 300.0, "float"))),
]
GROUPS = [None, "model", "provider", "status", "endpoint", "user", "session", "attempts"]


@pytest.mark.parametrize("filter_", FILTERS, ids=lambda f: repr(f)[:40])
@pytest.mark.parametrize("group_by", [*GROUPS, "property:feature"])
def test_metrics_are_the_same_in_both(
    engines: tuple[AnalyticsStore, RecordsAnalytics], group_by: str | None, filter_: object
) -> None:
    chdb, pg = engines
    for bucket_s in (None, 3600, 86400):
        query = MetricsQuery("org_a", START, END, bucket_s, group_by, filter_)  # type: ignore[arg-type]
        expected = chdb.metrics(query)
        assert expected.totals.requests > 0 or filter_ is not None
        assert pg.metrics(query) == expected, (bucket_s, group_by)


def test_ranges_cut_at_the_same_millisecond(
    engines: tuple[AnalyticsStore, RecordsAnalytics],
) -> None:
    chdb, pg = engines
    for start, end in [(NOW - DAY_MS + 0.4, NOW - 0.6), (NOW - 7 * HOUR_MS, NOW - 6 * HOUR_MS)]:
        query = MetricsQuery("org_b", start, end, bucket_s=60)
        assert pg.metrics(query) == chdb.metrics(query)
    empty = MetricsQuery("org_c", START, END, bucket_s=3600, group_by="model")
    assert pg.metrics(empty) == chdb.metrics(empty)


@pytest.mark.parametrize("filter_", FILTERS[:3], ids=lambda f: repr(f)[:40])
def test_the_overview_is_the_same_in_both(
    engines: tuple[AnalyticsStore, RecordsAnalytics], filter_: object
) -> None:
    chdb, pg = engines
    for bucket_s in (None, 3600):
        query = MetricsQuery("org_a", START, END, bucket_s, filter=filter_)  # type: ignore[arg-type]
        assert pg.overview(query) == chdb.overview(query)
    nobody = MetricsQuery("org_c", START, END, 3600)
    assert pg.overview(nobody) == chdb.overview(nobody)


@pytest.mark.parametrize("key", ["session", "user"])
@pytest.mark.parametrize("sort", GROUP_SORTS)
def test_session_and_user_pages_are_the_same_in_both(
    engines: tuple[AnalyticsStore, RecordsAnalytics], key: str, sort: str
) -> None:
    chdb, pg = engines
    for descending in (True, False):
        query = GroupQuery("org_a", key, START, END, sort=sort, descending=descending, limit=7)  # type: ignore[arg-type]
        pages = 0
        while pages < 4:
            expected = chdb.groups(query)
            assert pg.groups(query) == expected, (pages, query)
            if len(expected) < query.limit:
                break
            last = expected[-1]
            after = GroupAfter(last.sort_value(query.sort), last.key)
            query = dataclasses.replace(query, after=after)
            pages += 1
        assert pages >= 1 or key == "session"


def test_text_in_bodies_is_refused_by_both(
    engines: tuple[AnalyticsStore, RecordsAnalytics],
) -> None:
    chdb, pg = engines
    query = MetricsQuery("org_a", START, END, filter=Leaf("response_body", "contains", "x", "text"))
    for engine in (chdb, pg):
        with pytest.raises(FilterError, match="text in bodies"):
            engine.metrics(query)


def test_an_embedded_records_store_has_no_records_analytics(tmp_path: Path) -> None:
    """An embedded (SQLite) records store is refused: its analytics are chDB's."""
    from llmtap.errors import ConfigError

    with pytest.raises(ConfigError, match="need Postgres"):
        RecordsAnalytics(f"sqlite:///{tmp_path / 'records.db'}")
