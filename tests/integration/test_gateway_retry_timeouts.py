"""Retries stay inside the call's total timeout, and their waits are not provider silence.

Each test runs its own proxy with short timeouts (the sweep that enforces them ticks once a
second) over the mock upstream; the bounds asserted are the timeouts plus slack, not speed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.testing.mock_upstream import MockUpstream
from support.attempts_pipeline import tag

CHAT: Any = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
SWEEP_SLACK_S = 2.5


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def proxy(tmp_path: Path, mock: MockUpstream, **settings: Any) -> ThreadedProxy:
    return ThreadedProxy(
        Settings(data_dir=tmp_path, proxy_port=0, openai_base_url=mock.url, **settings)
    )


def post(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-test", **headers},
        timeout=60,
    )


def failing(key: str, first: int, **more: str) -> dict[str, str]:
    return {
        "x-test": key,
        "x-mock-fail-key": key,
        "x-mock-fail-first": str(first),
        "x-mock-fail-status": "503",
        **more,
    }


def seen(mock: MockUpstream, key: str) -> int:
    return sum(1 for r in mock.requests if r.headers.get("x-test") == key)


def test_a_wait_that_would_end_past_the_total_timeout_is_not_taken(
    tmp_path: Path, mock: MockUpstream
) -> None:
    key = tag()
    with proxy(tmp_path, mock, total_timeout_s=2.5) as gw:
        started = time.monotonic()
        reply = post(
            gw.url,
            {
                **failing(key, 100),
                "Helicone-Retry-Enabled": "true",
                "Helicone-Retry-Num": "10",
                "Helicone-Retry-Factor": "1",
                "Helicone-Retry-Min-Timeout": "1000",
            },
        )
        elapsed = time.monotonic() - started
        retries = gw.metrics.gateway_retries
    # the provider's own 503 (not llmtap's 504) once the next wait no longer fits
    assert reply.status_code == 503
    assert "llmtap-error" not in reply.headers
    assert seen(mock, key) == 3  # at 0, 1 and 2 s; a fourth would start at 3 s
    assert retries == 2
    assert elapsed < 2.5 + SWEEP_SLACK_S


def test_slow_attempts_are_cut_by_the_total_timeout(tmp_path: Path, mock: MockUpstream) -> None:
    # the first 503 comes at 1.5 s, the retry's would at 3 s: the sweep (every second, so
    # between 2 and 3 s) cuts it first
    key = tag()
    with proxy(tmp_path, mock, total_timeout_s=2.0) as gw:
        started = time.monotonic()
        reply = post(
            gw.url,
            {
                **failing(key, 100, **{"x-mock-latency-ms": "1500"}),
                "Helicone-Retry-Enabled": "true",
                "Helicone-Retry-Num": "10",
                "Helicone-Retry-Min-Timeout": "10",
            },
        )
        elapsed = time.monotonic() - started
    assert reply.status_code == 504
    assert reply.headers["llmtap-error"] == "upstream_total_timeout"
    assert elapsed < 2.0 + SWEEP_SLACK_S
    assert seen(mock, key) == 2


def test_a_wait_longer_than_the_idle_timeout_is_not_provider_silence(
    tmp_path: Path, mock: MockUpstream
) -> None:
    key = tag()
    with proxy(tmp_path, mock, idle_timeout_s=1.0, total_timeout_s=30) as gw:
        reply = post(
            gw.url,
            {
                **failing(key, 1),
                "Helicone-Retry-Enabled": "true",
                "Helicone-Retry-Min-Timeout": "2500",
            },
        )
    assert reply.status_code == 200
    assert seen(mock, key) == 2
