"""ScoreSync between a real records store (SQLite) and a real analytics store (chDB): scores
reach the metrics, an analytics outage only delays them, and a second sync adds nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from llmtap.consumer.score_sync import ScoreSync
from llmtap.errors import StoreUnavailable
from llmtap.stores.analytics.chdb_client import ChdbClient
from llmtap.stores.analytics.metrics import MetricsQuery
from llmtap.stores.analytics.store import AnalyticsStore
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import Score, StoredScore
from support.probes import wait_for

T0 = 1_764_072_000_000.0


class Switchable:
    """The analytics store, with its score writes refused while ``down`` is set."""

    def __init__(self, store: AnalyticsStore) -> None:
        self.store = store
        self.down = False

    def write_scores(self, scores: Sequence[StoredScore]) -> None:
        if self.down:
            raise StoreUnavailable("analytics store: cannot insert (test outage)")
        self.store.write_scores(scores)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[RecordsStore, AnalyticsStore]]:
    records = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    analytics = AnalyticsStore(ChdbClient(tmp_path / "analytics"))
    yield records, analytics
    analytics.close()
    records.close()


def call(org: str, request_id: str) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id=org,
        created_unix_ms=T0,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
        model="m",
    )


def averages(analytics: AnalyticsStore, org: str) -> dict[str, tuple[int, float]]:
    result = analytics.score_metrics(MetricsQuery(org, T0 - 1000, T0 + 1000))
    return {name: (f.count, f.average) for name, f in result.totals.items()}


def test_an_outage_delays_the_scores_and_loses_none(
    stores: tuple[RecordsStore, AnalyticsStore],
) -> None:
    records, analytics = stores
    org = records.default_org_id()
    rows = [call(org, f"r{i}") for i in range(3)]
    records.write_batch(rows)
    analytics.write_batch(rows)
    for i in range(3):
        records.scores.put(org, f"r{i}", [Score("q", float(i))], max_pending=10)
    sink = Switchable(analytics)
    sync = ScoreSync(records.scores, sink, interval_s=0.05, pending_ttl_s=3600)

    sink.down = True
    with pytest.raises(StoreUnavailable):
        sync.sync_once()
    assert len(records.scores.unsynced(10)) == 3
    assert averages(analytics, org) == {}

    stop = threading.Event()
    runner = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    runner.start()
    try:
        sink.down = False
        wait_for(lambda: averages(analytics, org) == {"q": (3, 1.0)}, timeout_s=30, what="sync")
        assert records.scores.unsynced(10) == []
        # a value replaced later is sent again, and replaces the first in the metrics
        records.scores.put(org, "r0", [Score("q", 3.0)], max_pending=10)
        wait_for(lambda: averages(analytics, org) == {"q": (3, 2.0)}, timeout_s=30, what="resync")
    finally:
        stop.set()
        runner.join(10)
    assert sync.sync_once() == 0
    # sending the same scores again (two consumers, a crash before marking) counts them once
    analytics.write_scores(
        [StoredScore(org, "r1", "q", 1.0, False, 0.0), StoredScore(org, "r2", "q", 2.0, False, 0.0)]
    )
    assert averages(analytics, org) == {"q": (3, 2.0)}
