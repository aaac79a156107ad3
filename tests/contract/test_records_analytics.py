"""The analytics queries answered by Postgres's records table (``RecordsAnalytics``) give every
figure the embedded analytics store (chDB) gives for the same calls: metrics totals, series by
bucket and by each group key, filters, the Overview's panels and the session and user pages;
the response cache's figures (hits, hit rate, what they saved) and the score and feedback
figures, compared as ``/v1/metrics`` documents (``api.metrics_query.compute``).

Scores go into the records store's ``scores`` table as the API writes them, and into chDB the
way the consumer's ``ScoreSync`` sends them (a replaced value is a second, newer copy there);
scores posted for calls that do not exist and another organization's scores on the same request
ids must count in neither engine.

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

from llmtap.api.metrics_query import compute, compute_overview
from llmtap.consumer.score_sync import ScoreSync
from llmtap.demo.seed import Seeder, SeedPlan
from llmtap.stores.analytics.groups import GROUP_SORTS, GroupAfter, GroupQuery
from llmtap.stores.analytics.metrics import MetricsQuery
from llmtap.stores.analytics.store import AnalyticsStore
from llmtap.stores.factory import open_analytics_store
from llmtap.stores.filter import Branch, FilterError, Leaf
from llmtap.stores.records.analytics import RecordsAnalytics
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import FEEDBACK, Score
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
        # the gateway's fields: cache hits (priced, unpriced), fallbacks, prompts
        if i % 7 == 0:
            saved = None if i % 3 == 0 else rng.randrange(1, 5_000_000)
            changes.update(cache_hit=True, cache_saved_nano_usd=saved)
        changes["fallback_index"] = [None, None, 0, 1, 2][i % 5]
        changes["prompt_id"] = [None, "greeting", "farewell", "Zeta", "ünïcode"][i % 5]
        changes["prompt_version"] = [None, "v1", "v2", "v10"][(i // 5) % 4]
        if i % 11 == 0:
            changes["org_id"] = "org_b"
        varied.append(msgspec.structs.replace(row, **changes))
    return varied


def _scores(rows: list[RequestRow]) -> list[tuple[str, str, list[Score]]]:
    """(organization, request id, scores) of a varied set: numbers with long fractions (sums
    that depend on their order in floating point), booleans, feedback; calls that do not exist;
    org_b's scores on org_a's request ids."""
    rng = random.Random(11)
    given: list[tuple[str, str, list[Score]]] = []
    for i, row in enumerate(rows):
        found: list[Score] = []
        if i % 2 == 0:
            found.append(Score("quality", rng.choice([rng.random(), 0.1, 0.9, 1e6 * rng.random()])))
        if i % 3 == 0:
            found.append(Score("safe", float(i % 6 == 0), is_bool=True))
        if i % 4 != 3:
            found.append(Score(FEEDBACK, float(rng.random() < 0.6), is_bool=True))
        if i % 9 == 0:
            found.append(Score("latency-judge", -rng.random() * 1e3))
        if found:
            given.append((row.org_id, row.request_id, found))
        if row.org_id == "org_a" and i % 5 == 0:
            given.append(("org_b", row.request_id, [Score("quality", 1e9), Score(FEEDBACK, 1.0)]))
    for n in range(20):
        given.append(("org_a", f"never-logged-{n}", [Score("quality", 5e8), Score(FEEDBACK, 0.0)]))
    return given


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
            # as the API writes scores and the consumer's ScoreSync sends them on; the second
            # round replaces some values (the newest wins in both)
            sync = ScoreSync(records.scores, reference, interval_s=1, pending_ttl_s=1e9)
            given = _scores(rows)
            for n, (org, request_id, scores) in enumerate(given):
                first = [
                    Score(s.name, 7.0 if s.is_bool else s.value + 3, s.is_bool) for s in scores
                ]
                records.scores.put(org, request_id, first, max_pending=10_000, now_ms=NOW + n)
            sync.sync_once()
            for n, (org, request_id, scores) in enumerate(given):
                records.scores.put(
                    org, request_id, scores, max_pending=10_000, now_ms=NOW + 1e6 + n
                )
            sync.sync_once()
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
    Leaf("cache_hit", "eq", True, "bool"),
    Leaf("fallback_index", "gte", 1, "int"),
    Leaf("prompt_id", "in", ("greeting", "ünïcode"), "str"),
    Leaf("prompt_version", "exists", False, "str"),
    Leaf("feedback", "eq", True, "bool"),
    Leaf("feedback", "exists", False, "bool"),
    Leaf("score.quality", "gt", 0.5, "float"),
    Branch("or", (Leaf("score.safe", "exists", True, "float"), Leaf("model", "eq", "x", "str"))),
]
GROUPS = [
    None,
    "model",
    "provider",
    "status",
    "endpoint",
    "user",
    "session",
    "attempts",
    "cache_hit",
    "fallback_index",
    "prompt",
    "prompt_version",
]


@pytest.mark.parametrize("filter_", FILTERS, ids=lambda f: repr(f)[:40])
@pytest.mark.parametrize("group_by", [*GROUPS, "property:feature"])
def test_metrics_are_the_same_in_both(
    engines: tuple[AnalyticsStore, RecordsAnalytics], group_by: str | None, filter_: object
) -> None:
    chdb, pg = engines
    for bucket_s in (None, 3600, 86400):
        query = MetricsQuery("org_a", START, END, bucket_s, group_by, filter_)  # type: ignore[arg-type]
        expected = chdb.metrics(query)
        assert expected.totals.requests > 0
        assert pg.metrics(query) == expected, (bucket_s, group_by)
        assert pg.score_metrics(query) == chdb.score_metrics(query), (bucket_s, group_by)
    # the whole /v1/metrics document: cache hit rate and savings, scores, feedback
    assert compute(pg, query) == compute(chdb, query), group_by


def test_the_data_holds_what_the_figures_are_about(
    engines: tuple[AnalyticsStore, RecordsAnalytics],
) -> None:
    """Cache hits with and without savings, fallbacks, prompts, scores and feedback are there
    (a contract over zeros would prove nothing); no other organization's score and no score of
    a call that does not exist counts."""
    chdb, pg = engines
    query = MetricsQuery("org_a", START, END)
    document = compute(pg, query)["totals"]
    assert document["cache_hits"] > 50 and document["cache_saved_nano_usd"] > 0
    assert 0 < document["cache_hit_rate"] < 1
    assert document["scores"]["quality"]["count"] > 300
    assert document["scores"]["quality"]["max"] < 1e6  # org_b's 1e9, never-logged's 5e8
    assert {"quality", "safe", "latency-judge", FEEDBACK} == set(document["scores"])
    assert 0 < document["feedback"]["positive_rate"] < 1
    # org_b's own scores count on its own calls; its 1e9s on org_a's request ids count nowhere
    theirs = compute(pg, MetricsQuery("org_b", START, END))["totals"]
    assert theirs == compute(chdb, MetricsQuery("org_b", START, END))["totals"]
    assert theirs["scores"]["quality"]["count"] > 0 and theirs["scores"]["quality"]["max"] < 1e6
    expected_groups = {
        "cache_hit": {"false", "true"},
        "fallback_index": {None, "0", "1", "2"},
        "prompt": {None, "greeting", "farewell", "Zeta", "ünïcode"},
        "prompt_version": {None, "v1", "v2", "v10"},
    }
    for group_by, groups in expected_groups.items():
        series = pg.metrics(MetricsQuery("org_a", START, END, group_by=group_by)).series
        assert {m.group for m in series} == groups, group_by


def test_ranges_cut_at_the_same_millisecond(
    engines: tuple[AnalyticsStore, RecordsAnalytics],
) -> None:
    chdb, pg = engines
    for start, end in [(NOW - DAY_MS + 0.4, NOW - 0.6), (NOW - 7 * HOUR_MS, NOW - 6 * HOUR_MS)]:
        query = MetricsQuery("org_b", start, end, bucket_s=60)
        assert pg.metrics(query) == chdb.metrics(query)
        assert compute(pg, query) == compute(chdb, query)
    empty = MetricsQuery("org_c", START, END, bucket_s=3600, group_by="model")
    assert pg.metrics(empty) == chdb.metrics(empty)


@pytest.mark.parametrize("filter_", [*FILTERS[:3], *FILTERS[-3:]], ids=lambda f: repr(f)[:40])
def test_the_overview_is_the_same_in_both(
    engines: tuple[AnalyticsStore, RecordsAnalytics], filter_: object
) -> None:
    chdb, pg = engines
    for bucket_s in (None, 3600):
        query = MetricsQuery("org_a", START, END, bucket_s, filter=filter_)  # type: ignore[arg-type]
        assert pg.overview(query) == chdb.overview(query)
        assert compute_overview(pg, query) == compute_overview(chdb, query)
    nobody = MetricsQuery("org_c", START, END, 3600)
    assert pg.overview(nobody) == chdb.overview(nobody)
    assert compute_overview(pg, nobody) == compute_overview(chdb, nobody)


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
