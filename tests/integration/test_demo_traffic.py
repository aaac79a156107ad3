"""The demo's traffic driver against real sockets: a proxy in this process (``ThreadedProxy``)
configured as ``serve --demo`` configures it, and the mock upstream behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.demo.calls import ROUTED_PROVIDERS, CallParams, MiniCatalogue
from llmtap.demo.traffic import TrafficDriver, render, send
from llmtap.proxy.server import ThreadedProxy
from llmtap.serve import demo_settings
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.probes import wait_for


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def test_every_catalogue_call_is_answered_as_planned_through_the_proxy(
    tmp_path: Path, mock: MockUpstream
) -> None:
    settings = demo_settings(Settings(data_dir=tmp_path / "data", proxy_port=0), mock.url)
    catalogue = MiniCatalogue(random.Random(7))
    # the mock's pace is irrelevant here: every call answered at once
    calls = [
        dataclasses.replace(catalogue.next_call(), latency_ms=0, chunk_delay_ms=0)
        for _ in range(120)
    ]

    async def send_all(port: int) -> list[int]:
        return [await send("127.0.0.1", port, render(call), 10.0) for call in calls]

    with ThreadedProxy(settings) as proxy:
        statuses = asyncio.run(send_all(proxy.port))

    # a 400 or 404 here would be a request the provider (or a route) does not accept
    assert statuses == [call.fail_status or 200 for call in calls]
    assert {c.provider for c in calls} == {"openai", "anthropic", *ROUTED_PROVIDERS}
    assert {c.kind for c in calls} == {"chat", "embeddings"}
    assert any(c.stream for c in calls) and any(c.session for c in calls)
    seen = {r.path for r in mock.requests[-len(calls) :]}
    assert seen == {"/v1/chat/completions", "/v1/messages", "/v1/embeddings"}


class _Slow:
    """Every call a plain chat the mock answers after 300 ms."""

    def next_call(self) -> CallParams:
        return CallParams("openai", "gpt-4o-mini", (("user", "hi"),), latency_ms=300)


def test_the_driver_never_opens_more_than_its_bound_and_plays_open_calls_out_on_stop(
    mock: MockUpstream,
) -> None:
    driver = TrafficDriver(
        "127.0.0.1", mock.port, _Slow(), calls_per_s=50, max_in_flight=2, rng=random.Random(1)
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(driver.run(stop)))
    before = len(mock.requests)
    thread.start()
    try:
        wait_for(
            lambda: driver.stats.skipped >= 5 and driver.stats.answered >= 2,
            timeout_s=20,
            what="the driver to skip ticks with both slots busy",
        )
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()
    stats = driver.stats
    # 50 ticks a second against 300 ms calls: at most two ever open, the other ticks skipped
    assert stats.skipped >= 5
    # the calls open at stop were answered, not cut
    assert stats.unanswered == 0
    assert stats.statuses == {200: stats.started}
    assert len(mock.requests) - before == stats.started
