"""The analytics sink's batch insert (JSONCompactEachRow: each row an array in column order):
every kept column lands in its own column, and text that looks like the format's own syntax
(newlines, brackets, quotes, backslashes, NUL, non-BMP characters) is stored as sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtap.stores.analytics import AnalyticsStore
from llmtap.stores.analytics.ddl import COLUMNS, TABLE
from llmtap.stores.factory import open_analytics_store
from llmtap.stores.row import RequestRow

T0 = 1_764_072_000_000.0

HOSTILE = 'a\n{"x": [1]}\r\n]["\\\x00\u2028 \U0001f600 \' ,null'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AnalyticsStore]:
    opened = open_analytics_store(f"chdb:///{tmp_path / 'analytics'}")
    yield opened
    opened.close()


def _distinct_row(request_id: str) -> RequestRow:
    """Every kept column a value no other column holds, so a column shifted by one shows."""
    return RequestRow(
        request_id=request_id,
        org_id="org-compact",
        created_unix_ms=T0 + 123,
        source="proxy",
        provider="openai-x",
        method="POST",
        target_url="https://api.example.test/v1/chat/completions",
        path="/v1/chat/completions",
        status=201,
        error="upstream_timeout",
        streamed=True,
        model="model-req",
        response_model="model-resp",
        endpoint="chat.completions",
        finish_reason="length",
        user_id="user-1",
        session_id="session-1",
        session_path="/a/b",
        session_name="name-1",
        properties={"feature": "chat", "k2": "v2"},
        usage_source="provider",
        input_tokens=11,
        output_tokens=22,
        total_tokens=33,
        cache_read_tokens=4,
        cache_write_tokens=5,
        reasoning_tokens=6,
        audio_input_tokens=7,
        audio_output_tokens=8,
        cost_nano_usd=9_000,
        cost_source="genai-prices",
        latency_ms=101.5,
        ttft_ms=40.25,
        upstream_headers_ms=12.5,
        request_size=1_001,
        response_size=2_002,
        cache_hit=True,
        cache_saved_nano_usd=3_003,
        attempts=2,
        fallback_index=1,
        prompt_id="prompt-1",
        prompt_version="v3",
    )


def _stored(store: AnalyticsStore, request_id: str) -> dict[str, Any]:
    rows = store._client.query_rows(
        f"SELECT * FROM {TABLE} FINAL WHERE request_id = {{rid:String}}", {"rid": request_id}
    )
    assert len(rows) == 1
    return rows[0]


def test_every_column_lands_in_its_own_column(store: AnalyticsStore) -> None:
    sent = _distinct_row("req-columns")
    store.write_batch([_distinct_row("req-other"), sent])
    got = _stored(store, "req-columns")
    for name in COLUMNS:
        want = getattr(sent, name)
        assert got[name] == want or str(got[name]).lower() == str(want).lower(), name
    assert str(got["created"]).startswith("2025-11-25 12:00:00.123")


def test_text_that_looks_like_the_format_is_stored_as_sent(store: AnalyticsStore) -> None:
    hostile = RequestRow(
        request_id="req-hostile",
        org_id="org-compact",
        created_unix_ms=T0,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.example.test/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
        model=HOSTILE,
        user_id=HOSTILE,
        error=HOSTILE,
        properties={HOSTILE: HOSTILE, "plain": "]\n["},
        usage_source="unknown",
        cost_source="unpriced",
        latency_ms=1.0,
    )
    store.write_batch([hostile, _distinct_row("req-after")])
    got = _stored(store, "req-hostile")
    assert got["model"] == HOSTILE
    assert got["user_id"] == HOSTILE
    assert got["error"] == HOSTILE
    assert got["properties"] == {HOSTILE: HOSTILE, "plain": "]\n["}
    # the row after it in the same block is whole too
    assert _stored(store, "req-after")["model"] == "model-req"
