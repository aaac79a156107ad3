"""The records store's hot statements are answered from indexes, never by reading the table.

At a million rows a full scan costs seconds (a page sorted by cost took 2.8 s; each batch the
consumer wrote got slower as the table grew, because the claims lookup scanned it). Timings are
measured in benchmarks/; here SQLite's own plan for each statement is checked, which is exact and
fast: ``SCAN requests`` without an index, or a temporary B-tree to sort, fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmtap.stores.filter import Leaf
from llmtap.stores.records.engine import create_engine
from llmtap.stores.records.migrate import upgrade_with
from llmtap.stores.records.reader import SORT_FIELDS, PageQuery, Position, RecordsReader
from llmtap.stores.records.upsert import write_rows
from llmtap.stores.row import RequestRow


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'records.db'}")
    upgrade_with(engine)
    yield engine
    engine.dispose()


def _rows(n: int) -> list[RequestRow]:
    return [
        RequestRow(
            request_id=f"req-{i:04d}",
            org_id="org_a",
            created_unix_ms=1_764_000_000_000.0 + i,
            source="proxy",
            provider="openai",
            method="POST",
            target_url="https://api.openai.com/v1/chat/completions",
            path="/v1/chat/completions",
            status=200,
            model="gpt-4o-mini",
            cost_nano_usd=None if i % 5 == 0 else 1000 + i,
            total_tokens=None if i % 7 == 0 else 10 + i,
            latency_ms=100.0 + i,
            record_digest=f"digest-{i}",
            properties={"env": "prod"},
        )
        for i in range(n)
    ]


def _plans(engine: sa.Engine, run: Any) -> list[str]:
    """The plan of every SELECT reading ``requests`` while ``run()`` runs."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any):
        if statement.lstrip().upper().startswith("SELECT") and "FROM requests" in statement:
            seen.append((statement, params))

    def trace(statement: str) -> None:
        # statements run on the sqlite3 connection itself (the records upsert's claims lookup
        # goes past SQLAlchemy), seen with their parameters already in the text
        if statement.lstrip().upper().startswith("SELECT") and "FROM requests" in statement:
            seen.append((statement, ()))

    def traced(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.set_trace_callback(trace)

    def untraced(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(None)

    engine.dispose()  # every connection the run uses is checked out (and traced) afresh
    sa.event.listen(engine, "before_cursor_execute", capture)
    sa.event.listen(engine, "checkout", traced)
    sa.event.listen(engine, "checkin", untraced)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
        sa.event.remove(engine, "checkout", traced)
        sa.event.remove(engine, "checkin", untraced)
    assert seen, "no statement read the requests table"
    plans = []
    with engine.connect() as conn:
        for statement, params in seen:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).fetchall()
            plans.append(" | ".join(str(row[-1]) for row in rows))
    return plans


def _assert_indexed(plans: list[str]) -> None:
    for plan in plans:
        assert "SCAN requests" not in plan or "USING" in plan, plan
        assert "TEMP B-TREE" not in plan, plan


def test_writing_a_batch_looks_up_its_ids_by_the_primary_key(engine: sa.Engine) -> None:
    write_rows(engine, _rows(50))
    again = _rows(80)
    plans = _plans(engine, lambda: write_rows(engine, again))
    for plan in plans:
        assert "SCAN requests" not in plan, plan


@pytest.mark.parametrize("sort", SORT_FIELDS)
@pytest.mark.parametrize("descending", [True, False])
def test_a_page_in_any_sort_walks_an_index(engine: sa.Engine, sort: Any, descending: bool) -> None:
    write_rows(engine, _rows(60))
    reader = RecordsReader(engine)

    def pages() -> None:
        first = reader.page(PageQuery("org_a", sort=sort, descending=descending, limit=10))
        assert len(first) == 10
        after = Position(1005 if sort == "cost" else 1_764_000_000_010.0, "req-0010")
        if sort in ("latency", "tokens"):
            after = Position(110, "req-0010")
        reader.page(PageQuery("org_a", sort=sort, descending=descending, after=after, limit=10))

    plans = _plans(engine, pages)
    if sort == "created":
        # created ties are rare (ms); the index gives the order, the request id breaks ties
        for plan in plans:
            assert "SCAN requests" not in plan or "USING" in plan, plan
    else:
        _assert_indexed(plans)


def test_a_filtered_page_sorted_by_cost_still_walks_the_cost_index(engine: sa.Engine) -> None:
    write_rows(engine, _rows(60))
    reader = RecordsReader(engine)
    prop = Leaf("properties.env", "eq", "prod", "str")
    plans = _plans(engine, lambda: reader.page(PageQuery("org_a", prop, sort="cost", limit=10)))
    _assert_indexed(plans)


def test_a_three_clause_filter_sorted_by_time_is_not_sorted_from_a_range(
    engine: sa.Engine,
) -> None:
    from llmtap.stores.filter import Branch

    write_rows(engine, _rows(60))
    reader = RecordsReader(engine)
    three = Branch(
        "and",
        (
            Leaf("model", "eq", "gpt-4o-mini", "str"),
            Leaf("properties.env", "eq", "prod", "str"),
            Leaf("latency_ms", "gt", 500.0, "float"),
        ),
    )
    plans = _plans(engine, lambda: reader.page(PageQuery("org_a", three, limit=50)))
    for plan in plans:
        assert "TEMP B-TREE FOR ORDER BY" not in plan, plan
