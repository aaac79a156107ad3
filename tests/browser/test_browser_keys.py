"""API keys in a real browser: a key created on ``/keys`` is shown once (a reload says "already
shown"), works against the API, and is revoked through the confirmation step — the API refuses
it within ``key_cache_ttl_s`` — and revoking the key this browser signed in with signs it out.
Organization B never sees A's keys, cannot revoke one by its id, nor open A's one-time page; a
hostile key name reads as text."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Locator, Page, expect

from support.browser import GuardedPage, PageAs, Served
from support.probes import wait_for

EVIL_NAME = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'><svg onload=alert(3)>"
assert len(EVIL_NAME) <= 80  # the list shows names clipped at 80 characters


def api_status(served: Served, key: str) -> int:
    answer = httpx.get(
        served.dashboard_url + "/v1/requests",
        params={"limit": 1},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return answer.status_code


def create_key(page: Page, name: str) -> str:
    """Through the form; the new key as the page shows it (once)."""
    page.goto("/keys")
    page.get_by_label("name").fill(name)
    page.get_by_role("button", name="Create key").click()
    expect(page).to_have_url(re.compile(r"/keys/new/"))
    shown = page.get_by_label("the new key")
    expect(shown).to_have_value(re.compile(r"^sk-llmtap-"))
    return shown.input_value()


def key_row(page: Page, name: str) -> Locator:
    return page.locator("table.keys tbody tr").filter(
        has=page.locator("td").first.get_by_text(name, exact=True)
    )


def revoke(page: Page, name: str) -> None:
    """Through the list's link and the confirmation page."""
    page.goto("/keys")
    key_row(page, name).get_by_role("link", name="revoke…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Revoke key {name}?")
    page.get_by_role("button", name="Revoke this key").click()


def test_a_key_is_shown_once_works_and_is_revoked(signed_in: GuardedPage, served: Served) -> None:
    page = signed_in.page
    key = create_key(page, "ci-runner")
    expect(page.locator(".facts-list")).to_contain_text("ci-runner")
    signed_in.guard.expect_console_error(r"status of 410")
    page.reload()
    expect(page.locator("main")).to_contain_text("already shown")
    expect(page.get_by_label("the new key")).to_have_count(0)
    assert key not in page.content()

    assert api_status(served, key) == 200
    revoke(page, "ci-runner")
    expect(page).to_have_url(re.compile(r"/keys\?revoked="))
    expect(page.get_by_role("status")).to_contain_text("ci-runner")
    expect(key_row(page, "ci-runner").locator("td").nth(4)).to_contain_text("revoked")
    expect(key_row(page, "ci-runner").get_by_role("link", name="revoke…")).to_have_count(0)
    wait_for(
        lambda: api_status(served, key) == 401,
        timeout_s=15,  # LLMTAP_KEY_CACHE_TTL_S is 1 s here (conftest)
        interval_s=0.2,
        what="the API refusing the revoked key",
    )
    assert api_status(served, served.key) == 200  # the signed-in key still works


def test_revoking_the_key_you_signed_in_with_signs_you_out(
    signed_in: GuardedPage, page_as: PageAs, served: Served
) -> None:
    own = create_key(signed_in.page, "short-lived")
    with page_as(own) as guarded:
        page = guarded.page
        page.goto("/keys")
        expect(page.locator("header.top .signout")).to_be_visible()
        revoke(page, "short-lived")
        expect(page.get_by_role("heading", name="Sign in to llmtap")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("you are signed out")
        page.goto("/keys")
        expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)keys$"))
    wait_for(
        lambda: api_status(served, own) == 401,
        timeout_s=15,
        interval_s=0.2,
        what="the API refusing the revoked key",
    )
    signed_in.page.goto("/keys")  # the other browser, signed in with another key, stays in
    expect(key_row(signed_in.page, "short-lived").locator("td").nth(4)).to_contain_text("revoked")


def test_organization_b_never_sees_or_revokes_a_key_of_a(
    signed_in: GuardedPage, page_as: PageAs, served: Served
) -> None:
    a = signed_in.page
    a_key = create_key(a, "a-secret-name")
    a.goto("/keys")
    a_id = key_row(a, "a-secret-name").locator("td").nth(2).inner_text()
    # a key of A's, created but not yet shown: its one-time page is A's browser's alone
    csrf = a.locator('meta[name="csrf-token"]').get_attribute("content")
    made = a.request.post(
        "/keys",
        form={"name": "a-unshown", "csrf": csrf or ""},
        headers={"Origin": served.dashboard_url},
        max_redirects=0,
    )
    assert made.status == 303, made.status
    ticket_path = made.headers["location"]

    key_b = served.new_org_key("bravo")
    with page_as(key_b) as b:
        page = b.page
        page.goto("/keys")
        expect(page.locator("table.keys tbody tr")).to_have_count(1)  # B's own key
        assert "a-secret-name" not in page.content() and a_id not in page.content()
        b.guard.expect_console_error(r"status of (404|410)")
        response = page.goto(f"/keys/{a_id}/revoke")
        assert response is not None and response.status == 404
        token = page.locator('meta[name="csrf-token"]').get_attribute("content")
        refused = page.request.post(
            f"/keys/{a_id}/revoke",
            form={"csrf": token or ""},
            headers={"Origin": served.dashboard_url},
            max_redirects=0,
        )
        assert refused.status == 404
        response = page.goto(ticket_path)
        assert response is not None and response.status == 410
        expect(page.locator("main")).to_contain_text("already shown")
        assert "sk-llmtap-" not in page.locator("main").inner_text()
    assert api_status(served, a_key) == 200  # B's attempt left it working
    a.goto(ticket_path)  # and A still gets its one showing
    expect(a.get_by_label("the new key")).to_have_value(re.compile(r"^sk-llmtap-"))


def test_a_hostile_key_name_reads_as_text(signed_in: GuardedPage) -> None:
    page = signed_in.page
    create_key(page, EVIL_NAME)
    expect(page.locator(".facts-list dd").first).to_have_text(EVIL_NAME)
    page.goto("/keys")
    expect(key_row(page, EVIL_NAME)).to_have_count(1)
    key_row(page, EVIL_NAME).get_by_role("link", name="revoke…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Revoke key {EVIL_NAME}?")
    expect(page.locator("img[src='x'], main svg[onload]")).to_have_count(0)
