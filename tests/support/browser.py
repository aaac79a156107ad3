"""A real browser for tests: Debian's ``chromium`` driven by Playwright, and a guard on every
page that turns what a user would never see into a test failure.

Playwright's own browser download is not reachable here, so the browser is always the
``chromium`` on PATH (``scripts/services/chromium.sh ensure`` installs it; ``scripts/test`` runs
that). Each test gets a fresh context (no cookies, no cache) watched by a :class:`PageGuard`:

* every request to anything but 127.0.0.1 is aborted **and** recorded (the page is offline by
  design: one attempt to reach a CDN is a failure even if the page still looks fine);
* every console error, uncaught page error and Content-Security-Policy violation is recorded
  (violations both from the console and from ``securitypolicyviolation`` events);
* every dialog (``alert``, ``confirm``, ``prompt``) is dismissed and recorded: a logged prompt
  that manages to run script usually proves it with an ``alert``.

:meth:`PageGuard.assert_clean` fails with the whole list; the fixtures call it after each test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    Playwright,
    Route,
    StorageState,
    ViewportSize,
    expect,
)

from support.gateway import GatewayProcess
from support.probes import wait_for

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
LOOPBACK = "127.0.0.1"
# schemes that never leave the page (inline images, generated blobs, the blank first page)
_LOCAL_SCHEMES = ("data", "blob", "about")

# A listener for CSP violations, added by Playwright before any of the page's own script (it is
# injected through the DevTools protocol, so the page's CSP does not apply to it).
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__llmtapCspViolation(
    [e.violatedDirective, e.blockedURI, e.sourceFile + ":" + e.lineNumber].join(" "));
});
"""


def chromium_path() -> str:
    """The ``chromium`` binary; skip the test without one (fail under CI, like a missing
    service: scripts/test installs it, so a missing browser there is a broken set-up)."""
    path = shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (run scripts/services/chromium.sh ensure)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def launch(playwright: Playwright) -> Browser:
    """Headless Debian chromium. ``--no-sandbox``: CI runs as root, where the sandbox refuses."""
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
    )


@dataclass
class PageGuard:
    """What went wrong in one browser context; see the module docstring."""

    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    # console errors a test provoked on purpose (e.g. the 404 of a hand-edited URL)
    expected_console: list[re.Pattern[str]] = field(default_factory=list)

    def expect_console_error(self, pattern: str) -> None:
        """Accept console errors matching ``pattern`` (a regex) from now on in this context."""
        self.expected_console.append(re.compile(pattern))

    def problems(self) -> list[str]:
        return [
            *(f"request outside 127.0.0.1 (aborted): {url}" for url in self.blocked),
            *(f"console error: {text}" for text in self.console_errors),
            *(f"page error: {text}" for text in self.page_errors),
            *(f"CSP violation: {text}" for text in self.csp_violations),
            *(f"dialog opened: {text}" for text in self.dialogs),
        ]

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "the browser saw:\n  " + "\n  ".join(problems)

    def watch(self, context: BrowserContext) -> None:
        context.route("**/*", self._route)
        context.expose_binding("__llmtapCspViolation", self._csp_event)
        context.add_init_script(_CSP_LISTENER)
        context.on("page", self._watch_page)

    def _watch_page(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(f"{error.name}: {error}"))
        page.on("dialog", self._dialog)

    def _route(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in _LOCAL_SCHEMES or parts.hostname == LOOPBACK:
            route.continue_()
            return
        self.blocked.append(url)
        route.abort("blockedbyclient")

    def _console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.csp_violations.append(text)
        elif message.type == "error" and not any(p.search(text) for p in self.expected_console):
            where = message.location.get("url", "")
            self.console_errors.append(f"{text} ({where})" if where else text)

    def _csp_event(self, source: object, text: str) -> None:
        self.csp_violations.append(text)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


@dataclass
class GuardedPage:
    page: Page
    guard: PageGuard


PageAs = Callable[[str | None], AbstractContextManager[GuardedPage]]
"""The ``page_as`` fixture: ``page_as(key)`` opens a guarded page signed in with ``key``."""


@contextmanager
def guarded_page(
    browser: Browser, base_url: str, storage_state: StorageState | None = None
) -> Iterator[GuardedPage]:
    """A page in a fresh context of ``browser`` (1280 x 800, ``base_url`` for relative ``goto``),
    watched by a guard; signed in when ``storage_state`` holds a session cookie. The guard is
    checked on the way out unless the body raised (its own failure says more)."""
    context = browser.new_context(
        base_url=base_url, viewport=VIEWPORT, storage_state=storage_state, locale="en-US"
    )
    guard = PageGuard()
    guard.watch(context)
    try:
        page = context.new_page()
        yield GuardedPage(page, guard)
        for opened in context.pages:
            # a round trip delivers the events still queued (the sync API hands them over only
            # while it talks to the browser)
            opened.evaluate("0")
        guard.assert_clean()
    finally:
        context.close()


def sign_in(page: Page, key: str) -> None:
    """Through the form, as a person does; lands on the Overview."""
    page.goto("/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def reload_until(page: Page, path: str, shown: Locator, what: str) -> None:
    """Open ``path`` until ``shown`` is on it: the analytics store (Sessions, Users, Properties)
    sees a call a moment after the records store the API answers from."""

    def there() -> bool:
        page.goto(path)
        return shown.count() > 0

    wait_for(there, timeout_s=30, interval_s=0.2, what=what)


_KEY = re.compile(r"\bsk-llmtap-\S+")


class Served:
    """``llmtap serve`` for one test module, with the key it printed (organization A)."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        key = gateway.first_key()
        assert key is not None, gateway.output()[-2000:]
        self.key = key

    @property
    def dashboard_url(self) -> str:
        return self.gateway.api_url

    def openai(self, key: str | None = None) -> openai.OpenAI:
        """The official SDK pointed at the proxy, logging into ``key``'s organization."""
        return openai.OpenAI(
            base_url=self.gateway.url + "/v1",
            api_key="sk-provider",
            max_retries=0,
            default_headers={"Helicone-Auth": f"Bearer {key or self.key}"},
        )

    def call(self, content: str, headers: dict[str, str], key: str | None = None) -> str:
        """One chat call through the proxy with the OpenAI SDK and extra ``Helicone-*``
        headers; its request id."""
        raw = self.openai(key).chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": content}],
            extra_headers=headers,
        )
        return raw.headers["helicone-id"]

    def wait_logged(self, *request_ids: str, key: str | None = None) -> None:
        """Wait until the API returns each call (it went through the queue and the consumer)."""
        headers = {"Authorization": f"Bearer {key or self.key}"}
        with httpx.Client(base_url=self.gateway.api_url, headers=headers, timeout=10) as api:
            for request_id in request_ids:
                wait_for(
                    lambda: api.get(f"/v1/requests/{request_id}").status_code == 200,  # noqa: B023
                    timeout_s=30,
                    interval_s=0.1,
                    what=f"the call {request_id} in the API",
                )

    def new_org_key(self, name: str) -> str:
        """A key of a new organization, made the way an operator does (``llmtap keys``)."""
        done = subprocess.run(
            [
                *(sys.executable, "-m", "llmtap", "--data-dir", str(self.gateway.data_dir)),
                *("keys", "create", "--new-org", name, "--name", "browser-test"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=self.gateway.env,
        )
        found = _KEY.search(done.stdout)
        assert found is not None, done.stdout
        return found.group(0)
