"""Sessions in a real browser: calls made with the OpenAI SDK through the proxy carrying
``Helicone-Session-Id``/``-Path``/``-Name`` show as a session on ``/sessions``; its page draws the
tree of paths (``/plan`` > ``/plan/search`` > ``/plan/search/fetch``), a node opens to list its
calls (each linking to the request) and the timeline has one bar per call. Organization B never
sees A's session, whatever URL it types; a hostile session name, path and id read as text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from playwright.sync_api import Locator, Page, expect

from support.browser import GuardedPage, PageAs, Served, reload_until

SESSION = "trip-42"
NAME = "Plan a trip"
PATHS = ("/plan", "/plan/search", "/plan/search/fetch", "/plan/search/fetch")
EVIL_ID = "evil-\"'><svg onload=alert('sid')>"
EVIL_NAME = "<script>alert('name')</script>"
EVIL_PATH = "/x<img src=x onerror=alert('path')>"


@dataclass(frozen=True)
class Sessions:
    calls: dict[str, list[str]]  # path -> request ids, in call order
    evil: str
    key_b: str


@pytest.fixture(scope="module")
def sessions(served: Served) -> Sessions:
    calls: dict[str, list[str]] = {}
    for i, path in enumerate(PATHS):
        headers = {
            "Helicone-Session-Id": SESSION,
            "Helicone-Session-Path": path,
            "Helicone-Session-Name": NAME,
        }
        calls.setdefault(path, []).append(served.call(f"step {i} of the trip", headers))
    evil = served.call(
        "a hostile session",
        {
            "Helicone-Session-Id": EVIL_ID,
            "Helicone-Session-Path": EVIL_PATH,
            "Helicone-Session-Name": EVIL_NAME,
        },
    )
    key_b = served.new_org_key("bravo")
    served.call("b's own", {"Helicone-Session-Id": "b-session"}, key=key_b)
    served.wait_logged(*(i for ids in calls.values() for i in ids), evil)
    return Sessions(calls, evil, key_b)


def session_row(page: Page, session_id: str) -> Locator:
    return page.locator(
        f'table.groups tbody tr[data-href="/sessions/{quote(session_id, safe="")}"]'
    )


def node(parent: Locator, name: str) -> Locator:
    """The tree node ``name`` directly under ``parent`` (the tree, or another node)."""
    label = parent.page.locator(":scope > summary > code").get_by_text(name, exact=True)
    return parent.locator(":scope > details.node").filter(has=label)


def test_a_session_shows_as_a_tree_and_a_timeline(
    signed_in: GuardedPage, sessions: Sessions
) -> None:
    page = signed_in.page
    row = session_row(page, SESSION)
    reload_until(page, "/sessions", row, "the session on /sessions")
    expect(row.locator("td").first).to_contain_text(NAME)
    expect(row.locator("td").nth(1)).to_have_text("4")  # requests
    row.locator("td").nth(3).click()  # the row, not its link
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Session {NAME}")

    tree = page.locator("section.tree")
    plan = node(tree, "plan")
    search = node(plan, "search")
    fetch = node(search, "fetch")
    for each in (plan, search, fetch):
        expect(each).to_have_count(1)
    expect(plan.locator(":scope > summary")).to_contain_text("4 calls")  # its subtree
    expect(search.locator(":scope > summary")).to_contain_text("3 calls")
    expect(fetch.locator(":scope > summary")).to_contain_text("2 calls")

    # the deepest level starts closed; opening it lists its own calls
    fetch_calls = fetch.locator(":scope > table.calls tbody tr")
    expect(fetch_calls.first).to_be_hidden()
    fetch.locator(":scope > summary").click()
    expect(fetch_calls).to_have_count(2)
    expect(fetch_calls.first).to_be_visible()
    links = fetch_calls.locator("a").evaluate_all("a => a.map(e => e.getAttribute('href'))")
    assert sorted(links) == sorted(f"/requests/{i}" for i in sessions.calls["/plan/search/fetch"])
    expect(plan.locator(":scope > table.calls tbody tr")).to_have_count(1)

    # one bar per call, one lane per path
    expect(page.locator("section.timeline svg rect.bar")).to_have_count(4)
    expect(page.locator("section.timeline .lane-labels li")).to_have_text(
        list(dict.fromkeys(PATHS))
    )
    box = page.locator("section.timeline svg.bars").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] >= 3 * 16

    fetch_calls.first.locator("a").click()
    expect(page).to_have_url(re.compile(re.escape(links[0]) + "$"))
    expect(page.locator("section.conversation article.role-user .text")).to_contain_text("step")


def test_organization_b_never_sees_a_session_of_a(page_as: PageAs, sessions: Sessions) -> None:
    with page_as(sessions.key_b) as b:
        page = b.page
        reload_until(page, "/sessions", session_row(page, "b-session"), "B's session")
        expect(page.locator("table.groups tbody tr[data-href]")).to_have_count(1)
        assert SESSION not in page.content() and NAME not in page.content()
        b.guard.expect_console_error(r"status of 404")
        for session_id in (SESSION, EVIL_ID):
            response = page.goto(f"/sessions/{quote(session_id, safe='')}?range=30d")
            assert response is not None and response.status == 404
            assert "trip" not in page.content() and "onerror" not in page.content()
        # a filter naming A's session on the list finds nothing
        page.goto('/sessions?f={"field":"session_id","op":"eq","value":"trip-42"}')
        expect(page.locator("table.groups td.empty")).to_be_visible()


def test_a_hostile_session_reads_as_text(signed_in: GuardedPage, sessions: Sessions) -> None:
    page = signed_in.page
    row = session_row(page, EVIL_ID)
    reload_until(page, "/sessions", row, "the hostile session on /sessions")
    expect(row.locator("td").first).to_contain_text(EVIL_NAME)
    expect(row.locator("td").first).to_contain_text("evil-\"'><svg")
    row.locator("td a").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Session {EVIL_NAME}")
    expect(page.locator("section.facts code").first).to_have_text(EVIL_ID)
    expect(page.locator("section.timeline .lane-labels li")).to_have_text([EVIL_PATH])
    expect(node(page.locator("section.tree"), EVIL_PATH.strip("/"))).to_have_count(1)
    expect(page.locator("img[src='x'], svg[onload], script:not([src]):not([type])")).to_have_count(
        0
    )
    # the guard fails the test if any of it ran (a dialog) or broke the page
