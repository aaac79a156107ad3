"""Hostile: a caller with a key fills the embedded cache with answers of its own. ``cache.db``
stays within ``LLMTAP_CACHE_MAX_MB``: new answers take the place of the ones expiring soonest,
and one that cannot fit at all is not stored (counted) and leaves no claim behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmtap.testing.mock_upstream import MockUpstream
from support.gateway_cache import ON, cache_proxy, cache_status, chat
from support.probes import wait_for

MiB = 1024 * 1024


@pytest.fixture
def mock() -> Any:
    with MockUpstream() as upstream:
        yield upstream


def _long_chat(words: int) -> tuple[dict[str, Any], dict[str, str]]:
    """A call whose answer is ``words`` words of 48 characters (the mock echoes them)."""
    text = " ".join(f"w{i:06d}" + "x" * 40 for i in range(words))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return body, {"x-mock-chunks": str(words)}


def _file_sizes(data: Path) -> tuple[int, int]:
    db, wal = data / "cache.db", data / "cache.db-wal"
    return db.stat().st_size, wal.stat().st_size if wal.exists() else 0


def test_a_flood_of_answers_keeps_cache_db_within_its_cap(
    tmp_path: Path, mock: MockUpstream
) -> None:
    body, knobs = _long_chat(2000)  # ~100 KB an answer: 40 of them are 4 MiB
    with cache_proxy(tmp_path, mock, cache_max_mb=1) as proxy:
        for i in range(40):
            headers = {**ON, **knobs, "Helicone-Cache-Seed": f"flood-{i}"}
            reply = chat(proxy.url, headers, body)
            assert reply.status_code == 200 and cache_status(reply)[0] == "MISS"
            wait_for(lambda n=i: proxy.metrics.cache_saves == n + 1, timeout_s=10, what="saved")
            db, wal = _file_sizes(tmp_path / "data")
            assert db <= 1 * MiB, f"cache.db is {db} bytes after {i + 1} answers"
            assert wal <= 8 * MiB, f"its WAL is {wal} bytes after {i + 1} answers"
        metrics = proxy.metrics
        assert metrics.cache_evicted > 0 and metrics.cache_not_stored == 0
        assert metrics.cache_errors == 0 and metrics.internal_errors == 0
        # the newest answer is kept and served; the oldest made room
        last = chat(proxy.url, {**ON, **knobs, "Helicone-Cache-Seed": "flood-39"}, body)
        assert cache_status(last)[0] == "HIT"
        first = chat(proxy.url, {**ON, **knobs, "Helicone-Cache-Seed": "flood-0"}, body)
        assert cache_status(first)[0] == "MISS"


def test_an_answer_larger_than_the_cap_is_not_stored_and_frees_its_slot(
    tmp_path: Path, mock: MockUpstream
) -> None:
    body, knobs = _long_chat(30000)  # ~1.4 MiB: more than the whole file may hold
    headers = {**ON, **knobs}
    with cache_proxy(tmp_path, mock, cache_max_mb=1, cache_fill_wait_s=60) as proxy:
        first = chat(proxy.url, headers, body)
        assert first.status_code == 200 and cache_status(first)[0] == "MISS"
        wait_for(lambda: proxy.metrics.cache_not_stored == 1, timeout_s=10, what="refused")
        # the slot's claim is gone: the next call fills it again at once, it does not wait
        second = chat(proxy.url, headers, body)
        assert second.status_code == 200 and cache_status(second)[0] == "MISS"
        assert second.elapsed.total_seconds() < 30
        wait_for(lambda: proxy.metrics.cache_not_stored == 2, timeout_s=10, what="refused")
        assert mock.request_count == 2
        assert proxy.metrics.cache_saves == 0 and proxy.metrics.cache_errors == 0
        # small answers are still cached
        assert cache_status(chat(proxy.url, ON))[0] == "MISS"
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=10, what="saved")
        assert cache_status(chat(proxy.url, ON))[0] == "HIT"
        assert _file_sizes(tmp_path / "data")[0] <= 1 * MiB
