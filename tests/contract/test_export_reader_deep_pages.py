"""An export's n-th page costs what its first does, with a time range in the filter (SQLite).

SQLite bounds an index range by the first usable condition on the column: with the time range
before the keyset, every page of an export scanned the index from the range's end down to its
keyset, so a million-row export read ~n²/2 index entries. Counted here in SQLite virtual-machine
steps (its progress handler), not in time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from llmtap.stores.filter import Branch, Leaf
from llmtap.stores.records import RecordsStore
from llmtap.stores.records.export_reader import export_page
from llmtap.stores.records.reader import PageQuery, Position
from llmtap.stores.row import RequestRow

ROWS = 4000
PAGE = 200


def _row(org: str, i: int) -> RequestRow:
    return RequestRow(
        request_id=f"r{i:05d}",
        org_id=org,
        created_unix_ms=float(i),
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://x/v1",
        path="/v1",
        status=200,
        usage_source="provider",
        cost_source="genai-prices",
        latency_ms=float(i % 97),
        cost_nano_usd=i,
        properties={"env": "prod"},
    )


def test_a_deep_page_reads_no_more_than_the_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = RecordsStore(url)
    org = store.create_org("a")
    store.write_batch([_row(org, i) for i in range(ROWS)])
    store.close()

    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    engine = sa.create_engine(url)
    sa.event.listen(engine, "connect", lambda conn, _record: conn.set_progress_handler(count, 10))
    in_range = Branch(
        "and", (Leaf("created", "gte", 0.0, "time"), Leaf("created", "lt", 1e12, "time"))
    )

    def read(after: Position | None) -> tuple[int, list[dict[str, Any]]]:
        steps[0] = 0
        rows = export_page(engine, PageQuery(org, in_range, "created", True, after, PAGE))
        return steps[0], rows

    first_steps, first = read(None)
    assert [r["request_id"] for r in first] == [
        f"r{i:05d}" for i in range(ROWS - 1, ROWS - 1 - PAGE, -1)
    ]
    deep = ROWS - 15 * PAGE  # the 16th page
    deep_steps, rows = read(Position(float(deep), f"r{deep:05d}"))
    assert [r["request_id"] for r in rows] == [
        f"r{i:05d}" for i in range(deep - 1, deep - 1 - PAGE, -1)
    ]
    assert rows[0]["properties"] == {"env": "prod"}
    assert deep_steps < 2 * first_steps, (first_steps, deep_steps)
    engine.dispose()
