"""Properties in a real browser: a property found by typing in the page's look-up, its values'
breakdown (requests per value), and a value clicked through to Requests filtered on it.
Organization B never finds A's names or values, whatever it types in the box or the URL; a
hostile property name (sent through the Helicone async-log route, whose ``meta`` may name any
property) and value read as text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from support.browser import GuardedPage, PageAs, Served, reload_until

EVIL_NAME = "x<script>alert('pn')</script>"
EVIL_VALUE = "\"'><svg onload=alert('pv')><img src=x onerror=alert('pv2')>"


@dataclass(frozen=True)
class Props:
    prod: list[str]
    evil: str
    key_b: str


def log_with_meta(served: Served, meta: dict[str, str]) -> str:
    """A call logged through ``/oai/v1/log`` (no proxy): ``meta`` carries its settings."""
    body = {
        "providerRequest": {
            "url": "https://api.openai.com/v1/chat/completions",
            "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            "meta": meta,
        },
        "providerResponse": {"status": 200, "headers": {}, "json": {"choices": []}},
    }
    answer = httpx.post(
        served.dashboard_url + "/oai/v1/log",
        json=body,
        headers={"Authorization": f"Bearer {served.key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


@pytest.fixture(scope="module")
def props(served: Served) -> Props:
    def call(env: str) -> str:
        return served.call(
            f"in {env}", {"Helicone-Property-Environment": env, "Helicone-Property-Tier": "gold"}
        )

    prod = [call("prod") for _ in range(3)]
    staging = call("staging")
    evil = log_with_meta(served, {f"Helicone-Property-{EVIL_NAME}": EVIL_VALUE})
    key_b = served.new_org_key("bravo")
    b_call = served.call("b's", {"Helicone-Property-Region": "b-north"}, key=key_b)
    served.wait_logged(*prod, staging, evil)
    served.wait_logged(b_call, key=key_b)
    return Props(prod, evil, key_b)


def value_row(page: Page, value: str) -> Locator:
    return page.locator("table.groups tbody tr[data-href]").filter(
        has=page.locator("td").first.get_by_text(value, exact=True)
    )


def names(page: Page) -> Locator:
    return page.locator("#property-names ul.names li")


def request_ids(page: Page) -> set[str]:
    hrefs = page.locator("table.requests tbody tr[data-href]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-href'))"
    )
    return {str(h).removeprefix("/requests/") for h in hrefs}


def test_choose_a_property_see_its_values_and_their_calls(
    signed_in: GuardedPage, props: Props
) -> None:
    page = signed_in.page
    # the breakdown comes from the analytics store: wait until it has the calls
    reload_until(page, "/properties/environment", value_row(page, "prod"), "the breakdown")

    page.goto("/properties")
    expect(names(page).filter(has_text="environment")).to_have_count(1)
    expect(names(page).filter(has_text="tier")).to_have_count(1)
    page.get_by_label("property name").press_sequentially("envi")
    expect(names(page)).to_have_text(["environment"])  # swapped in as one types
    expect(page).to_have_url(re.compile(r"find=envi"))
    names(page).get_by_role("link", name="environment").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Property environment")
    rows = page.locator("table.groups tbody tr[data-href]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").first).to_have_text("prod")  # by requests, most first
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("3")
    expect(rows.nth(1).locator("td").first).to_have_text("staging")
    expect(rows.nth(1).locator("td").nth(1)).to_have_text("1")

    rows.nth(0).get_by_role("link", name="prod").click()
    expect(page).to_have_url(re.compile(r"/requests\?"))
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(3)
    assert request_ids(page) == set(props.prod)
    expect(page.get_by_role("combobox", name="field")).to_have_value("properties.environment")
    expect(page.get_by_role("combobox", name="value")).to_have_value("prod")


def test_organization_b_never_finds_a_property_of_a(page_as: PageAs, props: Props) -> None:
    with page_as(props.key_b) as b:
        page = b.page
        page.goto("/properties?range=30d")
        expect(names(page)).to_have_text(["region"])
        page.get_by_label("property name").press_sequentially("envi")
        expect(names(page)).to_have_text(["No property names found."])
        for name in ("environment", "tier", EVIL_NAME):
            page.goto(f"/properties/{quote(name, safe='')}?range=30d")
            expect(page.locator("table.groups td.empty")).to_be_visible()
            assert "prod" not in page.locator("#results").inner_text()
        # a value of A's in the URL: Requests filtered on it is empty
        page.goto(
            "/requests?range=30d&f="
            + quote('{"field":"properties.environment","op":"eq","value":"prod"}')
        )
        expect(page.locator("table.requests td.empty")).to_be_visible()


def test_a_hostile_property_reads_as_text(signed_in: GuardedPage, props: Props) -> None:
    page = signed_in.page
    shown = EVIL_NAME.lower()  # names are stored lower-cased
    path = f"/properties/{quote(shown, safe='')}"
    reload_until(page, path, value_row(page, EVIL_VALUE), "the hostile property's breakdown")
    page.goto("/properties")
    page.get_by_label("property name").press_sequentially("<script>")
    expect(names(page)).to_have_text([shown])
    names(page).get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Property {shown}")
    value_row(page, EVIL_VALUE).get_by_role("link").click()
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(1)
    assert request_ids(page) == {props.evil}
    expect(page.get_by_role("combobox", name="value")).to_have_value(EVIL_VALUE)
    expect(page.locator("img[src='x'], main svg[onload]")).to_have_count(0)
