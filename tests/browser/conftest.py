"""Fixtures of the browser tests: one real ``llmtap serve`` (proxy + backend + dashboard, its own
data directory and free ports, the mock upstream as the provider) and one headless chromium per
module; per test a fresh, guarded browser context (see ``support.browser``).

A new page's tests (Sessions, Export, ...) are a new ``test_browser_<page>.py`` here using
``served`` (to make calls through the proxy), ``signed_in`` (a page already signed in as
organization A) and ``page_as`` (any key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, StorageState, sync_playwright

from llmtap.testing.mock_upstream import MockUpstream
from support.browser import GuardedPage, PageAs, Served, guarded_page, launch, sign_in
from support.gateway import GatewayProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is marked ``browser`` (``-m "not browser"`` leaves them out)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data: Path = tmp_path_factory.mktemp("browser") / "data"
    with MockUpstream() as mock:
        env = {
            "LLMTAP_OPENAI_BASE_URL": mock.url,
            "LLMTAP_ANTHROPIC_BASE_URL": mock.url,
            "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
            "LLMTAP_DASHBOARD_REFRESH_S": "2",  # the live-refresh test waits for one refresh
            "LLMTAP_KEY_CACHE_TTL_S": "1",  # the keys tests wait for a revoked key to be refused
        }
        with GatewayProcess(data, env=env) as gateway:
            gateway.wait_api()
            yield Served(gateway)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def storage_of(browser: Browser, served: Served) -> Callable[[str], StorageState]:
    """The signed-in cookies of ``key`` (signing in once per key and module keeps tests fast)."""
    states: dict[str, StorageState] = {}

    def of(key: str) -> StorageState:
        if key not in states:
            with guarded_page(browser, served.dashboard_url) as signing:
                sign_in(signing.page, key)
                states[key] = signing.page.context.storage_state()
        return states[key]

    return of


@pytest.fixture
def page_as(browser: Browser, served: Served, storage_of: Callable[[str], StorageState]) -> PageAs:
    """``page_as(key)``: a fresh guarded page signed in with ``key`` (``None``: signed out)."""

    def open_page(key: str | None) -> AbstractContextManager[GuardedPage]:
        state = storage_of(key) if key else None
        return guarded_page(browser, served.dashboard_url, state)

    return open_page


@pytest.fixture
def signed_out(page_as: PageAs) -> Iterator[GuardedPage]:
    with page_as(None) as guarded:
        yield guarded


@pytest.fixture
def signed_in(page_as: PageAs, served: Served) -> Iterator[GuardedPage]:
    """A fresh guarded page signed in with the key ``serve`` printed (organization A)."""
    with page_as(served.key) as guarded:
        yield guarded
