"""The SQLite batch write runs on the sqlite3 connection itself (``bulk_upsert.raw_executemany``,
``raw_select``), past SQLAlchemy, which used to turn every driver error into one of its own.
The store's error boundary must sort them as before: a database that cannot grow in the middle of
a batch's upsert or claims lookup is an outage (``StoreUnavailable``: the consumer holds the batch
and retries it), never a crash of the consumer and never a row's fault, and nothing of the batch
is kept; once there is room the same batch lands, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmtap.errors import StoreUnavailable
from llmtap.stores.records import RecordsStore, upsert
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows


def _row(request_id: str, org_id: str, digest: str) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id=org_id,
        created_unix_ms=1.0,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
        properties={"note": "x" * 3000},  # a few rows need a new page of the table
        record_digest=digest,
    )


def _fail_once(step: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first write's ``step`` fails in the driver: ``upsert`` (the file may not grow, so the
    ``executemany`` finds the database full) or ``lookup`` (the claims lookup is interrupted)."""
    real_settle = upsert.settle
    calls: list[int] = []

    def failing(conn: sa.Connection, rows: Sequence[RequestRow]) -> None:
        calls.append(1)
        raw = conn.connection.driver_connection
        assert raw is not None
        if len(calls) > 1:
            conn.exec_driver_sql("PRAGMA max_page_count = 1073741823")
            real_settle(conn, rows)
        elif step == "lookup":
            raw.set_progress_handler(lambda: 1, 1)  # any statement on it: "interrupted"
            try:
                real_settle(conn, rows)
            finally:
                raw.set_progress_handler(None, 1)
        else:
            real_settle(conn, rows)
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(upsert, "settle", failing)
    return calls


@pytest.mark.parametrize("step", ["upsert", "lookup"])
def test_a_driver_error_mid_batch_is_an_outage_then_the_batch_lands_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    store = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    org = store.default_org_id()
    rows = [_row(f"req-{i}", org, f"digest-{i}") for i in range(40)]
    calls = _fail_once(step, monkeypatch)
    with pytest.raises(StoreUnavailable) as caught:
        store.write_batch(rows)
    assert not isinstance(caught.value, PoisonRows)
    assert caught.value.retriable
    assert ("full" if step == "upsert" else "interrupted") in str(caught.value)
    assert store.count_requests(org) == 0  # the transaction was rolled back whole
    store.write_batch(rows)  # the runner's retry of the same batch
    store.write_batch(rows)  # and a redelivery of it
    assert len(calls) == 3
    assert store.count_requests(org) == 40
    assert all(store.get_request(org, r.request_id) == r for r in rows)
    store.close()


def test_a_row_the_driver_cannot_bind_is_still_poison_alone(tmp_path: Path) -> None:
    # an integer past 64 bits: sqlite3 refuses it while binding (OverflowError), a row's fault
    store = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    org = store.default_org_id()
    good = _row("good", org, "d-good")
    bad = _row("bad", org, "d-bad")
    bad.input_tokens = 2**70
    with pytest.raises(PoisonRows) as caught:
        store.write_batch([good, bad])
    assert set(caught.value.reasons) == {"bad"}
    assert store.get_request(org, "good") == good
    assert store.get_request(org, "bad") is None
    store.close()
