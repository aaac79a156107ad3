"""The records store's score table on its own (SQLite): pending scores and the two ways they
are joined, last write wins, and the clean-up of scores whose call never came."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.stores.records import scores as score_table
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import Score
from support.api_backend import postgres_schema

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordsStore]:
    if request.param == "sqlite":
        opened = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
        yield opened
        opened.close()
        return
    with postgres_schema(PG_URL) as url:
        opened = RecordsStore(url)
        yield opened
        opened.close()


def row(org: str, request_id: str) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id=org,
        created_unix_ms=1_764_072_000_000.0,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
    )


def test_a_call_landing_after_its_scores_clears_their_pending_mark(store: RecordsStore) -> None:
    org = store.default_org_id()
    assert store.scores.put(org, "r1", [Score("q", 1.0)], max_pending=10) is True
    assert store.scores.pending_count(org) == 1
    store.write_batch([row(org, "r1")])
    assert store.scores.pending_count(org) == 0
    assert store.scores.for_requests(org, ["r1"]) == {"r1": [Score("q", 1.0)]}


def test_a_call_committed_between_the_apis_check_and_its_write_does_not_strand_the_score(
    store: RecordsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the API looked (no call yet), then the consumer committed the call and joined the scores
    # it could see (none), then the API wrote its score as pending
    org = store.default_org_id()
    store.write_batch([row(org, "r2")])
    monkeypatch.setattr(score_table, "_logged", lambda *_args: False)
    assert store.scores.put(org, "r2", [Score("q", 1.0)], max_pending=10) is True
    # the API's own look after its commit found the call
    assert store.scores.pending_count(org) == 0


def test_the_last_write_wins_and_an_older_one_never_overwrites(store: RecordsStore) -> None:
    org = store.default_org_id()
    store.write_batch([row(org, "r3")])
    store.scores.put(org, "r3", [Score("q", 0.1)], max_pending=10, now_ms=1000.0)
    store.scores.put(org, "r3", [Score("q", 0.2, is_bool=False)], max_pending=10, now_ms=3000.0)
    store.scores.put(org, "r3", [Score("q", 0.9)], max_pending=10, now_ms=2000.0)  # late replay
    assert store.scores.for_requests(org, ["r3"]) == {"r3": [Score("q", 0.2)]}
    [unsent] = store.scores.unsynced(10)
    assert (unsent.value, unsent.updated_unix_ms) == (0.2, 3000.0)


def test_a_value_changed_while_it_was_sent_stays_unsynced(store: RecordsStore) -> None:
    org = store.default_org_id()
    store.scores.put(org, "r4", [Score("q", 0.1)], max_pending=10, now_ms=1000.0)
    read = store.scores.unsynced(10)
    store.scores.put(org, "r4", [Score("q", 0.5)], max_pending=10, now_ms=2000.0)
    store.scores.mark_synced(read)
    [unsent] = store.scores.unsynced(10)
    assert unsent.value == 0.5
    store.scores.mark_synced([unsent])
    assert store.scores.unsynced(10) == []


def test_pending_scores_past_their_time_are_deleted_and_joined_ones_kept(
    store: RecordsStore,
) -> None:
    org = store.default_org_id()
    store.scores.put(org, "never", [Score("q", 1.0)], max_pending=10, now_ms=1000.0)
    store.scores.put(org, "late", [Score("q", 1.0)], max_pending=10, now_ms=1000.0)
    store.write_batch([row(org, "late")])
    store.scores.put(org, "fresh", [Score("q", 1.0)], max_pending=10, now_ms=9000.0)
    assert store.scores.prune_pending(5000.0) == 1
    kept = store.scores.for_requests(org, ["never", "late", "fresh"])
    assert set(kept) == {"late", "fresh"}
