"""The Overview's two queries agree with the separate metrics queries, panel by panel, and
redelivered copies count once in every panel (also with no calls at all)."""

from __future__ import annotations

import random
from pathlib import Path

from llmtap.demo.seed import Seeder, SeedPlan
from llmtap.stores.analytics.metrics import Metrics, MetricsQuery
from llmtap.stores.analytics.overview import Breakdown
from llmtap.stores.factory import open_analytics_store
from llmtap.stores.filter import Leaf

NOW = 1_764_072_000_000.0
DAY_MS = 86_400_000.0


def _same(a: Metrics, b: Metrics) -> None:
    assert (a.group, a.bucket_start_unix_ms) == (b.group, b.bucket_start_unix_ms)
    assert a == b


def _same_counts(a: Breakdown, b: Metrics) -> None:
    assert a.group == b.group
    assert (a.requests, a.errors, a.cost_nano_usd) == (b.requests, b.errors, b.cost_nano_usd)
    assert (a.priced_requests, a.unpriced_requests) == (b.priced_requests, b.unpriced_requests)


def test_every_panel_equals_its_own_query_and_copies_count_once(tmp_path: Path) -> None:
    seeder = Seeder(SeedPlan(rows=2500, days=1, users=300), "org_a", NOW)
    calls = list(seeder.calls())
    rows = [
        row for i in range(0, len(calls), 1000) for row in seeder.rows(calls[i : i + 1000], None)
    ]
    store = open_analytics_store(f"chdb://{tmp_path / 'analytics'}")
    try:
        store.write_batch(rows)
        copies = rows[:900]
        random.Random(1).shuffle(copies)
        store.write_batch(copies)  # redelivered: a second copy of 900 rows
        for filter_ in (None, Leaf("properties.env", "eq", "prod", "str")):
            query = MetricsQuery("org_a", NOW - DAY_MS, NOW, bucket_s=3600, filter=filter_)
            overview = store.overview(query)
            hourly = store.metrics(query)
            assert overview.totals == hourly.totals
            if filter_ is None:
                assert overview.totals.requests == 2500
            assert len(overview.series) == len(hourly.series) > 20
            for a, b in zip(overview.series, hourly.series, strict=True):
                _same(a, b)
            for group_by, panel in (
                ("model", overview.models),
                ("status", overview.statuses),
                ("user", overview.top_users),
            ):
                query_by = MetricsQuery(
                    "org_a", NOW - DAY_MS, NOW, group_by=group_by, filter=filter_
                )
                separate = {m.group: m for m in store.metrics(query_by).series}
                assert panel, group_by
                for m in panel:
                    _same_counts(m, separate[m.group])
                if group_by != "user":
                    assert len(panel) == len(separate)
                requests = [m.requests for m in panel]
                assert requests == sorted(requests, reverse=True)
            assert len(overview.top_users) == 10
            busiest = max(
                m.requests
                for m in store.metrics(
                    MetricsQuery("org_a", NOW - DAY_MS, NOW, group_by="user", filter=filter_)
                ).series
                if m.group is not None
            )
            assert overview.top_users[0].requests == busiest
        empty = store.overview(MetricsQuery("org_b", NOW - DAY_MS, NOW, bucket_s=3600))
        assert empty.totals.requests == 0 and empty.series == [] and empty.models == []
        nothing = store.metrics(MetricsQuery("org_b", NOW - DAY_MS, NOW, bucket_s=3600))
        assert nothing.totals == empty.totals and nothing.series == []
        by_model = store.metrics(MetricsQuery("org_b", NOW - DAY_MS, NOW, group_by="model"))
        assert by_model.totals == empty.totals and by_model.series == []
    finally:
        store.close()
