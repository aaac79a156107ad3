"""The dashboard in a real browser (Debian's chromium through Playwright) against a real
``llmtap serve``: calls made with the official OpenAI SDK through the proxy, then signing in,
finding them, filtering with the builder, reading a conversation, the Overview's charts and live
refresh, and ``/v1/docs`` — every page offline, without console errors or CSP violations (the
guard in ``support.browser`` fails the test otherwise)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from support.browser import GuardedPage, Served, sign_in
from support.probes import wait_for

SYSTEM = "You are a terse travel agent."
QUESTION = "Which trains go from Lyon to Turin?"


@dataclass(frozen=True)
class Calls:
    checkout: str
    search: str


@pytest.fixture(scope="module")
def calls(served: Served) -> Calls:
    """Two calls of organization A with different ``feature`` properties, logged and readable."""
    client = served.openai()

    def call(feature: str, user: str, messages: list[dict[str, str]]) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=messages,  # type: ignore[arg-type]
            extra_headers={"Helicone-User-Id": user, "Helicone-Property-Feature": feature},
        )
        return raw.headers["helicone-id"]

    made = Calls(
        checkout=call(
            "checkout",
            "alice",
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        ),
        search=call("search", "bob", [{"role": "user", "content": "find my booking"}]),
    )
    served.wait_logged(made.checkout, made.search)
    return made


def rows(page: Page) -> list[str]:
    """The request ids in the Requests table, top to bottom."""
    hrefs = page.locator("table.requests tbody tr[data-href]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-href'))"
    )
    return [str(h).removeprefix("/requests/") for h in hrefs]


def url_filter(page: Page) -> object:
    raw = parse_qs(urlsplit(page.url).query).get("f")
    return json.loads(raw[0]) if raw else None


def test_sign_in_with_the_key_serve_printed(signed_out: GuardedPage, served: Served) -> None:
    page = signed_out.page
    page.goto("/requests")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Frequests$|/login\?next=/requests$"))
    page.get_by_label("API key").fill(served.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/requests$"))
    expect(page.get_by_role("heading", name="Requests")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    page.goto("/")
    expect(page.get_by_label("API key")).to_be_visible()  # signed out for real


def test_a_wrong_key_gets_a_clear_message(signed_out: GuardedPage) -> None:
    page = signed_out.page
    # the refused sign-in answers 401, which chromium reports on the console
    signed_out.guard.expect_console_error(r"status of 401")
    page.goto("/login")
    page.get_by_label("API key").fill("sk-llmtap-not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That key is not valid (or was revoked).")
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_a_call_through_the_proxy_appears_on_requests(
    signed_in: GuardedPage, served: Served
) -> None:
    page = signed_in.page
    raw = served.openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "am I on the list?"}]
    )
    request_id = raw.headers["helicone-id"]
    page.goto("/requests")
    link = page.locator(f'a[href="/requests/{request_id}"]')

    def shown() -> bool:
        if link.count():
            return True
        page.reload()
        return False

    wait_for(shown, timeout_s=30, interval_s=0.2, what="the call on the Requests page")
    row = page.locator(f'tr[data-href="/requests/{request_id}"]')
    expect(row).to_contain_text("gpt-4o-mini")
    expect(row).to_contain_text("openai")
    expect(row.locator("td").nth(1)).to_have_text("200")


def test_filter_by_a_property_with_the_builder(signed_in: GuardedPage, calls: Calls) -> None:
    page = signed_in.page
    page.goto("/requests")
    expect(page.locator(f'tr[data-href="/requests/{calls.search}"]')).to_be_visible()

    page.get_by_role("button", name="+ condition").click()
    field = page.get_by_role("combobox", name="field")
    field.fill("")
    field.press_sequentially("feat")
    page.get_by_role("option", name="properties.feature", exact=True).click()  # looked up
    expect(field).to_have_value("properties.feature")
    value = page.get_by_role("combobox", name="value")
    value.press_sequentially("check")
    page.get_by_role("option", name="checkout", exact=True).click()
    page.get_by_role("button", name="Apply").click()

    wanted = {"field": "properties.feature", "op": "eq", "value": "checkout"}
    expect(page).to_have_url(re.compile(r"[?&]f="))
    assert url_filter(page) == wanted
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(1)
    assert rows(page) == [calls.checkout]

    page.reload()  # the URL holds the filter
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(1)
    expect(page.get_by_role("combobox", name="field")).to_have_value("properties.feature")
    expect(page.get_by_role("combobox", name="value")).to_have_value("checkout")

    page.go_back()  # Back: the unfiltered list again
    expect(page.locator(f'tr[data-href="/requests/{calls.search}"]')).to_be_visible()
    assert url_filter(page) is None
    page.go_forward()
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(1)


def test_the_builder_suggests_from_the_keyboard(signed_in: GuardedPage, calls: Calls) -> None:
    page = signed_in.page
    page.goto("/requests")
    page.get_by_role("button", name="+ condition").click()
    field = page.get_by_role("combobox", name="field")
    field.fill("")
    field.press_sequentially("properties.fe")
    expect(page.get_by_role("option", name="properties.feature", exact=True)).to_be_visible()
    field.press("ArrowDown")
    field.press("Enter")  # picks the suggestion; does not submit the form
    expect(field).to_have_value("properties.feature")
    assert "f=" not in page.url
    value = page.get_by_role("combobox", name="value")
    value.press_sequentially("sea")
    expect(page.get_by_role("option", name="search", exact=True)).to_be_visible()
    value.press("ArrowDown")
    value.press("Enter")
    expect(value).to_have_value("search")
    value.press("Enter")  # the list is closed: now Enter submits
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(1)
    assert rows(page) == [calls.search]


def test_a_request_shows_its_conversation(signed_in: GuardedPage, calls: Calls) -> None:
    page = signed_in.page
    page.goto("/requests")
    page.locator(f'tr[data-href="/requests/{calls.checkout}"] td').nth(2).click()  # the row
    expect(page).to_have_url(re.compile(f"/requests/{calls.checkout}$"))
    conversation = page.locator("section.conversation")
    system = conversation.locator("article.role-system")
    expect(system.locator("header")).to_have_text("system")
    expect(system.locator(".text")).to_have_text(SYSTEM)
    expect(conversation.locator("article.role-user .text")).to_have_text(QUESTION)
    answer = conversation.locator("article.role-assistant .text")
    expect(answer).to_be_visible()
    expect(answer).not_to_have_text("")
    expect(page.locator(".facts")).to_contain_text("alice")
    expect(page.locator(".props-table")).to_contain_text("checkout")


def test_overview_draws_its_charts(signed_in: GuardedPage, calls: Calls) -> None:
    page = signed_in.page
    page.goto("/")
    charts = page.locator("figure.chart-box")
    expect(charts).to_have_count(5)
    for i in range(5):
        canvas = charts.nth(i).locator("canvas")
        expect(canvas).to_have_count(1)
        box = canvas.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100, i
    requests_stat = page.locator(".stats > div", has_text="Requests").locator(".value")
    assert int(requests_stat.inner_text().replace(",", "")) >= 2
    expect(page.locator("section.tables")).to_contain_text("gpt-4o-mini")


def test_live_refresh_updates_the_panels(signed_in: GuardedPage, served: Served) -> None:
    page = signed_in.page
    page.goto("/")
    stat = page.locator(".stats > div", has_text="Requests").locator(".value")
    before = int(stat.inner_text().replace(",", ""))
    page.get_by_label(re.compile("live refresh")).check()
    raw = served.openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "count me live"}]
    )
    served.wait_logged(raw.headers["helicone-id"])
    # no reload: the panels are swapped in place every LLMTAP_DASHBOARD_REFRESH_S (2 s here)
    expect(stat).not_to_have_text(str(before), timeout=20_000)
    assert int(stat.inner_text().replace(",", "")) > before
    expect(page.locator("figure.chart-box canvas")).to_have_count(5)  # redrawn after the swap
    assert page.get_by_label(re.compile("live refresh")).is_checked()


def test_api_docs_render_offline(signed_out: GuardedPage) -> None:
    page = signed_out.page
    page.goto("/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("llmtap")
    operations = page.locator(".opblock-summary-path")
    expect(operations.first).to_be_visible()
    paths = operations.all_inner_texts()
    assert any("/v1/requests/search" in p for p in paths), paths
    assert any("/v1/metrics" in p for p in paths), paths


def test_sign_in_lands_on_the_overview(signed_out: GuardedPage, served: Served) -> None:
    sign_in(signed_out.page, served.key)
    expect(signed_out.page.locator("header.top nav a[aria-current]")).to_have_text("Overview")
