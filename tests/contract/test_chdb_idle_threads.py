"""chDB's idle engine threads are bounded, so a long-running process keeps flat open files.

Each idle worker of the engine's global thread pool holds three ``/proc/self/task/<tid>/*`` files
open; with the engine's default (1,000 idle workers kept) an ``llmtap serve`` backend went from 60
to 380 open files in two minutes of steady load, all of them such workers (seen with gdb: every
"ThreadPool" thread waiting for work). ``ChdbClient`` starts the engine keeping at most
``IDLE_WORKERS``; the faults soak in benchmarks/ shows the backend's threads and files flat.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtap.errors import StoreUnavailable
from llmtap.stores.analytics.chdb_client import IDLE_WORKERS, ChdbClient
from llmtap.stores.analytics.ddl import TABLE
from llmtap.stores.analytics.store import AnalyticsStore


def test_the_engine_keeps_few_idle_workers(tmp_path: Path) -> None:
    client = ChdbClient(tmp_path / "analytics")
    try:
        settings = client.query_rows(
            "SELECT value FROM system.server_settings WHERE name = 'max_thread_pool_free_size'", {}
        )
        assert settings == [{"value": str(IDLE_WORKERS)}]
    finally:
        client.close()


def test_a_path_with_a_question_mark_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="may not contain"):
        ChdbClient(tmp_path / "what?verbose")


def test_the_writer_keeps_part_removal_sequential(tmp_path: Path) -> None:
    """More than 100 merged-away parts made chDB start 128 removal threads that never left."""
    store = AnalyticsStore(ChdbClient(tmp_path / "analytics"), retention_days=0)
    try:
        rows = store._client.query_rows(f"SHOW CREATE TABLE {TABLE}", {})
        assert "concurrent_part_removal_threshold = 1000000000" in rows[0]["statement"]
    finally:
        store.close()
