"""The proxy's key directory reads the records database and does nothing else there: starting a
proxy runs no migrations (the consumer, the API and ``llmtap migrate`` own the schema). Until the
schema exists, keyed calls go through (fail open); once it does, unknown keys are refused
without a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.stores.records.store import RecordsStore
from llmtap.testing.mock_upstream import MockUpstream

PROMPT: Any = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def tables(path: Path) -> list[str]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]


def call(proxy: ThreadedProxy, key: str) -> int:
    response = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": PROMPT},
        headers={"Authorization": "Bearer sk-provider", "Helicone-Auth": f"Bearer {key}"},
        timeout=10.0,
    )
    return response.status_code


def test_a_proxy_on_a_fresh_records_database_creates_nothing_and_fails_open(
    tmp_path: Path, mock: MockUpstream
) -> None:
    records_db = tmp_path / "records.db"
    url = f"sqlite:///{records_db}"
    settings = Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        records_url=url,
        openai_base_url=mock.url,
        anthropic_base_url=mock.url,
    )
    with ThreadedProxy(settings) as proxy:
        assert tables(records_db) == []  # no migration ran, no table was made
        assert call(proxy, "sk-llmtap-nobody") == 200  # no key table yet: the call goes through
        assert tables(records_db) == []

        records = RecordsStore(url)  # what the consumer or the API does at start
        try:
            _, key = records.create_key(records.default_org_id(), "k")
            assert call(proxy, key) == 200
            assert call(proxy, "sk-llmtap-nobody") == 401  # a failed lookup was not remembered
            assert proxy.metrics.refused == 1
        finally:
            records.close()
