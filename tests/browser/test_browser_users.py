"""Users in a real browser: a user id sent with ``Helicone-User-Id`` through the proxy is listed on
``/users``; their page draws its charts (canvases of real size, from ``data-chart`` attributes)
and lists their calls. Organization B typing A's user id sees none of A's; a hostile user id
reads as text on both pages."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pytest
from playwright.sync_api import Locator, Page, expect

from support.browser import GuardedPage, PageAs, Served, reload_until

USER = "carol/ops@example.com"  # a slash and an @: the link must still find her
EVIL_USER = "\"'><svg onload=alert('u')><img src=x onerror=alert('uid')>"


@dataclass(frozen=True)
class Users:
    carol: list[str]
    evil: str
    key_b: str


@pytest.fixture(scope="module")
def users(served: Served) -> Users:
    carol = [served.call(f"carol asks {i}", {"Helicone-User-Id": USER}) for i in range(3)]
    evil = served.call("hostile user", {"Helicone-User-Id": EVIL_USER})
    key_b = served.new_org_key("bravo")
    b_call = served.call("b's", {"Helicone-User-Id": "dave"}, key=key_b)
    served.wait_logged(*carol, evil)
    served.wait_logged(b_call, key=key_b)
    return Users(carol, evil, key_b)


def user_row(page: Page, user: str) -> Locator:
    return page.locator("table.groups tbody tr[data-href]").filter(
        has=page.locator("td").first.get_by_text(user, exact=True)
    )


def call_ids(page: Page) -> set[str]:
    hrefs = page.locator("table.requests tbody tr[data-href]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-href'))"
    )
    return {str(h).removeprefix("/requests/") for h in hrefs}


def assert_charts_drawn(page: Page) -> None:
    charts = page.locator("figure.chart-box")
    expect(charts).to_have_count(4)
    for i in range(4):
        canvas = charts.nth(i).locator("canvas")
        expect(canvas).to_have_count(1)
        box = canvas.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100, i
        # something was drawn on it (not only a blank canvas of the right size)
        assert canvas.evaluate(
            "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v)"
        ), i


def test_a_user_is_listed_and_has_charts_and_calls(signed_in: GuardedPage, users: Users) -> None:
    page = signed_in.page
    row = user_row(page, USER)
    reload_until(page, "/users", row, "carol on /users")
    expect(row.locator("td").nth(1)).to_have_text("3")
    row.locator("td").nth(1).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"User {USER}")
    assert_charts_drawn(page)
    expect(page.locator(".stats > div", has_text="Requests").locator(".value")).to_have_text("3")
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(3)
    assert call_ids(page) == set(users.carol)
    page.get_by_role("link", name="on the Requests page").click()
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(3)
    assert call_ids(page) == set(users.carol)


def test_organization_b_never_sees_a_user_of_a(page_as: PageAs, users: Users) -> None:
    with page_as(users.key_b) as b:
        page = b.page
        reload_until(page, "/users?range=30d", user_row(page, "dave"), "dave on /users")
        expect(page.locator("table.groups tbody tr[data-href]")).to_have_count(1)
        for user in (USER, EVIL_USER):
            page.goto(f"/users/{quote(user, safe='')}?range=30d")
            expect(page.locator("table.requests td.empty")).to_be_visible()
            expect(
                page.locator(".stats > div", has_text="Requests").locator(".value")
            ).to_have_text("0")
            body = page.locator("main").inner_text()
            assert "carol asks" not in body and "onerror" not in body.replace(user, "")


def test_a_hostile_user_id_reads_as_text(signed_in: GuardedPage, users: Users) -> None:
    page = signed_in.page
    row = user_row(page, EVIL_USER)
    reload_until(page, "/users", row, "the hostile user on /users")
    row.locator("td a").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"User {EVIL_USER}")
    assert_charts_drawn(page)
    assert call_ids(page) == {users.evil}
    expect(page.locator("img[src='x'], main svg[onload]")).to_have_count(0)
