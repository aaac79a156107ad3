"""The proxy's shipper with group commit in the embedded queue (``queue_group_commit_ms``): while
calls come, one fsync covers an interval's batches; once they stop, the shipper's idle tick syncs
what the last batches committed, and shutdown syncs too. Real proxy, real mock upstream, real
queue file; fsync is observed by wrapping ``os.fsync`` (it still syncs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.queue.factory import open_consumer
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import wait_for

PROMPT: Any = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


class WalSyncs:
    """Counts fsyncs of the queue's write-ahead log."""

    def __init__(self, wal: Path) -> None:
        self.wal = wal
        self.calls = 0
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        if self.wal.exists() and os.path.samestat(os.fstat(fd), os.stat(self.wal)):
            self.calls += 1
        self._real(fd)


def chat(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT).choices


def test_the_last_batches_are_synced_once_calls_stop_and_at_shutdown(
    tmp_path: Path, mock: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    syncs = WalSyncs(data / "queue.db-wal")
    monkeypatch.setattr(os, "fsync", syncs)
    # an interval far longer than the test: only the idle tick (1 s at most) can sync the 2nd
    settings = Settings(
        data_dir=data, proxy_port=0, openai_base_url=mock.url, queue_group_commit_ms=600_000
    )
    with ThreadedProxy(settings) as proxy:
        chat(proxy.url)
        wait_for(lambda: proxy.metrics.records_published == 1, what="the first record")
        assert syncs.calls == 1, "the first commit opens the interval and is synced"
        chat(proxy.url)
        wait_for(lambda: proxy.metrics.records_published == 2, what="the second record")
        wait_for(lambda: syncs.calls == 2, timeout_s=5, what="the idle tick's sync")
        chat(proxy.url)
        wait_for(lambda: proxy.metrics.records_published == 3, what="the third record")
    assert syncs.calls == 3, "the third commit is synced by the time the proxy has stopped"

    consumer = open_consumer(settings, group="check")
    try:
        got = []
        for _ in range(20):
            got += consumer.poll_batch(10, 0.2)
            if len(got) >= 3:
                break
    finally:
        consumer.close()
    assert len({m.key for m in got}) == 3
