"""Two organizations in one ``llmtap serve``, seen through a real browser: organization B never
sees A's calls on any page, chart, look-up or hand-edited URL; and a hostile prompt (``<script>``,
``<img onerror>``) logged by A shows as text everywhere — no dialog opens (the guard fails the
test if one does), no element is made from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Locator, Page, expect

from support.browser import GuardedPage, Served

SCRIPT = "<script>alert('script ran')</script>"
IMG = "<img src=x onerror=alert('img ran')>"
HOSTILE = f"{SCRIPT}{IMG}"


@dataclass(frozen=True)
class Tenants:
    key_b: str
    a_ids: list[str]
    a_hostile: str
    b_ids: list[str]


@pytest.fixture(scope="module")
def tenants(served: Served) -> Tenants:
    key_b = served.new_org_key("bravo")

    def call(key: str, user: str, feature: str, content: str) -> str:
        raw = served.openai(key).chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": content}],
            extra_headers={"Helicone-User-Id": user, "Helicone-Property-Feature": feature},
        )
        return raw.headers["helicone-id"]

    a_ids = [call(served.key, "alice-apple", "apple-pie", f"apple question {i}") for i in range(3)]
    a_hostile = call(served.key, f"mallory{IMG}", f"f{HOSTILE}", f"tell me {HOSTILE} now")
    b_ids = [call(key_b, "bob-banana", "banana-split", f"banana question {i}") for i in range(2)]
    served.wait_logged(*a_ids, a_hostile)
    served.wait_logged(*b_ids, key=key_b)
    return Tenants(key_b, [*a_ids, a_hostile], a_hostile, b_ids)


A_MARKERS = ("apple", "alice", "mallory", "onerror", "script ran")


def assert_no_a(page: Page, region: str | None = None) -> None:
    """Nothing of A's in the page's markup, or in the text of ``region`` (whose links may
    repeat the filter typed in the URL)."""
    text = page.content() if region is None else page.locator(region).inner_text()
    for marker in A_MARKERS:
        assert marker not in text, (page.url, marker)


def request_ids(page: Page) -> set[str]:
    hrefs = page.locator("table.requests tbody tr[data-href]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-href'))"
    )
    return {str(h).removeprefix("/requests/") for h in hrefs}


def suggestions(page: Page) -> Locator:
    return page.get_by_role("listbox").get_by_role("option")


def chart(page: Page, name: str) -> dict[str, Any]:
    raw = page.locator(f"#chart-{name}").get_attribute("data-chart")
    assert raw is not None
    spec: dict[str, Any] = json.loads(raw)
    return spec


def test_organization_b_sees_only_its_own_calls(
    page_as: Any, served: Served, tenants: Tenants
) -> None:
    with page_as(tenants.key_b) as b:
        page: Page = b.page
        page.goto("/requests?range=1h")
        expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(2)
        assert request_ids(page) == set(tenants.b_ids)
        assert_no_a(page)

        page.goto("/?range=1h")
        expect(page.locator("figure.chart-box canvas")).to_have_count(5)
        requests = chart(page, "requests")
        assert sum(v or 0 for s in requests["series"] for v in s["values"]) == 2
        expect(page.locator(".stats > div", has_text="Requests").locator(".value")).to_have_text(
            "2"
        )
        expect(page.locator("section.tables")).to_contain_text("bob-banana")
        assert_no_a(page)

        # the builder's look-ups offer B's property values only
        page.goto("/requests")
        page.get_by_role("button", name="+ condition").click()
        page.get_by_role("combobox", name="field").fill("properties.feature")
        value = page.get_by_role("combobox", name="value")
        value.click()
        expect(suggestions(page)).to_have_text(["banana-split"])


def test_hand_edited_urls_never_show_another_organizations_call(
    page_as: Any, tenants: Tenants
) -> None:
    with page_as(tenants.key_b) as b:
        page: Page = b.page
        b.guard.expect_console_error(r"status of 404")  # the refused pages answer 404
        for request_id in (tenants.a_ids[0], tenants.a_hostile):
            for path in (f"/requests/{request_id}", f"/requests/{request_id}/body/request"):
                response = page.goto(path)
                assert response is not None and response.status == 404, path
                assert_no_a(page)
        # a filter naming A's values, or an organization, in the URL finds nothing of A's
        apple = json.dumps({"field": "properties.feature", "op": "eq", "value": "apple-pie"})
        for query in (f"f={quote(apple)}", "q=apple"):
            page.goto(f"/requests?{query}")
            expect(page.locator("table.requests td.empty")).to_be_visible()
            assert_no_a(page, "#results")  # the form shows the filter as typed
        page.goto("/requests?org_id=default&org=default")  # A's organization id
        expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(2)
        assert request_ids(page) == set(tenants.b_ids)
        page.goto(f"/?f={quote(apple)}")
        expect(page.locator(".stats > div", has_text="Requests").locator(".value")).to_have_text(
            "0"
        )
        assert_no_a(page, "#panels")


def test_a_hostile_prompt_is_shown_as_text(signed_in: GuardedPage, tenants: Tenants) -> None:
    page = signed_in.page
    page.goto("/requests")
    row = page.locator(f'tr[data-href="/requests/{tenants.a_hostile}"]')
    expect(row).to_contain_text("mallory<img src=x onerror")  # clipped in the table
    row.locator("td").nth(2).click()
    user = page.locator("article.role-user .text")
    expect(user).to_have_text(f"tell me {HOSTILE} now")
    expect(page.locator(".props-table")).to_contain_text(f"f{HOSTILE}")
    expect(page.locator(".facts")).to_contain_text(f"mallory{IMG}")
    expect(page.locator("pre.json").first).to_contain_text("onerror")
    # nothing was made from it: no image pointing at "x", no script but ours
    expect(page.locator("img[src='x']")).to_have_count(0)
    scripts = page.locator("script").evaluate_all("s => s.map(e => e.src || e.type)")
    assert all(str(s).startswith("http://127.0.0.1") for s in scripts), scripts

    page.goto("/")  # the Overview's top users, and the builder's suggestions
    expect(page.locator("section.tables")).to_contain_text(f"mallory{IMG}")
    page.get_by_role("button", name="+ condition").click()
    page.get_by_role("combobox", name="field").fill("properties.feature")
    page.get_by_role("combobox", name="value").press_sequentially("f<")
    expect(suggestions(page)).to_have_text([f"f{HOSTILE}"])
    expect(page.locator("img[src='x']")).to_have_count(0)
    # the guard (no dialog, no CSP violation, no console error) is checked after the test
