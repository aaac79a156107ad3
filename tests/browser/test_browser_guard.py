"""The guard every browser test relies on can fail: a page that reaches for the internet, runs
inline script under a CSP, logs a console error, throws, or opens a dialog is caught on each
count. (The page is served by a route in the browser itself: no server is needed.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from support.browser import PageGuard
from support.probes import wait_for

PROBE_URL = "http://127.0.0.1:9/probe"
PROBE_PAGE = """<!doctype html><title>probe</title>
<img src="https://cdn.example.invalid/logo.png" alt="">
<script>document.title = "inline script ran";</script>
"""


def serve_probe(route: Route) -> None:
    route.fulfill(
        status=200,
        content_type="text/html",
        body=PROBE_PAGE,
        headers={"Content-Security-Policy": "script-src 'self'"},
    )


def seen(page: Page, check: Callable[[], object]) -> Callable[[], object]:
    """``check`` after a round trip to the page: the sync API delivers events only while it
    talks to the browser, never while the test waits."""
    return lambda: page.evaluate("0") == 0 and check()


def test_the_guard_catches_every_kind_of_problem(browser: Browser) -> None:
    context = browser.new_context()
    guard = PageGuard()
    guard.watch(context)
    try:
        page = context.new_page()
        page.route(PROBE_URL, serve_probe)  # a page route wins over the guard's context route
        page.goto(PROBE_URL)
        page.evaluate("console.error('boom')")
        page.evaluate("setTimeout(() => { throw new Error('kaboom'); }, 0)")
        page.evaluate("setTimeout(() => alert('hello'), 0)")

        wait_for(seen(page, lambda: guard.blocked), timeout_s=10, what="the blocked CDN request")
        assert guard.blocked == ["https://cdn.example.invalid/logo.png"]
        wait_for(
            seen(page, lambda: len(guard.csp_violations) >= 2),
            timeout_s=10,
            what="the CSP violation",
        )
        assert any("script-src" in v for v in guard.csp_violations), guard.csp_violations
        expect(page).to_have_title("probe")  # the inline script did not run
        wait_for(seen(page, lambda: guard.page_errors), timeout_s=10, what="the page error")
        assert "kaboom" in guard.page_errors[0]
        wait_for(seen(page, lambda: guard.dialogs), timeout_s=10, what="the dialog")
        assert guard.dialogs == ["alert: hello"]
        assert any("boom" in e for e in guard.console_errors), guard.console_errors

        with pytest.raises(AssertionError, match=r"request outside 127\.0\.0\.1"):
            guard.assert_clean()
        guard.expect_console_error("boom")
        page.evaluate("console.error('boom again')")
        page.evaluate("console.error('a real one')")
        wait_for(
            seen(page, lambda: any("a real one" in e for e in guard.console_errors)),
            timeout_s=10,
            what="the console error",
        )
        assert not any("again" in e for e in guard.console_errors)
    finally:
        context.close()
