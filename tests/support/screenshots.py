"""The dashboard's screenshots under ``docs/screenshots/`` (run by ``scripts/screenshots``).

A day of realistic calls (``llmtap seed``) in a fresh data directory, then ``llmtap serve --demo``
on it (live traffic through the proxy on top), then Debian's chromium signs in with a key made by
``llmtap keys create`` and saves each page at 1280 x 800. The pages are opened through the same
guard as the browser tests: a console error, a CSP violation or a request leaving the machine
stops the script instead of producing a picture of a broken page.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Page, expect, sync_playwright

from support.browser import GuardedPage, guarded_page, launch, sign_in
from support.gateway import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
PAGES = (
    "login",
    "overview",
    "requests",
    "request",
    "sessions",
    "users",
    "properties",
    "keys",
    "docs",
)
_KEY = re.compile(r"\bsk-llmtap-\S+")
_KEY_ID = re.compile(r"\bkey_[0-9a-f]+\b")


def llmtap(data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "llmtap", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return done.stdout


def shoot(page: Page, out: Path, name: str) -> None:
    page.mouse.move(0, 0)  # no hover effect in the picture
    page.screenshot(path=str(out / f"{name}.png"))
    print(f"wrote {out / f'{name}.png'}")


def pages(guarded: GuardedPage, key: str, out: Path) -> None:
    page = guarded.page
    page.goto("/login")
    expect(page.get_by_label("API key")).to_be_visible()
    shoot(page, out, "login")

    sign_in(page, key)
    expect(page.locator("figure.chart-box canvas")).to_have_count(5)
    shoot(page, out, "overview")

    page.goto("/requests")
    expect(page.locator("table.requests tbody tr[data-href]").first).to_be_visible()
    shoot(page, out, "requests")

    # a call with a system prompt: the conversation view at its most telling
    answered = json.dumps({"and": [{"field": "status", "op": "eq", "value": 200}]})
    page.goto(f"/requests?f={quote(answered)}&q={quote('You are')}")
    page.locator("table.requests tbody tr[data-href] td.time a").first.click()
    expect(page.locator("section.conversation article").first).to_be_visible()
    shoot(page, out, "request")

    # the session with the most calls: its tree has every level of the demo's scripts
    page.goto("/sessions?sort=requests")
    page.locator("table.groups tbody tr[data-href] td a").first.click()
    expect(page.locator("section.tree details.node details.node").first).to_be_visible()
    expect(page.locator("section.timeline svg rect.bar").first).to_be_visible()
    shoot(page, out, "sessions")

    page.goto("/users?sort=requests")
    page.locator("table.groups tbody tr[data-href] td a").first.click()
    expect(page.locator("figure.chart-box canvas")).to_have_count(4)
    shoot(page, out, "users")

    page.goto("/properties/feature")
    expect(page.locator("table.groups tbody tr[data-href]").first).to_be_visible()
    shoot(page, out, "properties")

    page.goto("/keys")
    expect(page.locator("table.keys tbody tr").first).to_be_visible()
    shoot(page, out, "keys")

    page.goto("/v1/docs")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    shoot(page, out, "docs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="calls to seed (default 20000)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llmtap-screenshots-") as tmp:
        data = Path(tmp) / "data"
        print(f"seeding {args.rows} calls over the last day in {data}")
        llmtap(data, "seed", "--rows", str(args.rows), "--days", "1")
        found = _KEY.search(llmtap(data, "keys", "create", "--name", "screenshots"))
        assert found is not None
        # a few more keys, one revoked, so the Keys page shows both states
        llmtap(data, "keys", "create", "--name", "ci-runner")
        retired = _KEY_ID.search(llmtap(data, "keys", "create", "--name", "old-laptop"))
        assert retired is not None
        llmtap(data, "keys", "revoke", retired.group(0))
        gateway = GatewayProcess(data)
        gateway.args += ["--demo", "--demo-calls-per-s", "5"]
        with gateway, sync_playwright() as playwright:
            gateway.wait_api()
            browser = launch(playwright)
            try:
                with guarded_page(browser, gateway.api_url) as guarded:
                    pages(guarded, found.group(0), args.out)
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
