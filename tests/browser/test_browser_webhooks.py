"""Webhooks and PostHog in a real browser: a webhook created with the Webhooks page's form shows
its signing secret once (a reload says "already shown") and is listed without it; a hostile
filter value reads as text; a metadata-address URL is a form error that keeps what was typed;
the PostHog project is saved (its key shown by its last four characters only) and removed."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from support.browser import GuardedPage

EVIL_VALUE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def fill_webhook(page: Page, url: str, filters: str = "", sample_rate: str = "100") -> None:
    page.goto("/webhooks")
    page.get_by_label("URL").fill(url)
    page.get_by_label("sample rate (%)").fill(sample_rate)
    page.get_by_label("property filters").fill(filters)
    page.get_by_role("button", name="Create webhook").click()


def test_a_webhook_is_created_and_its_secret_shown_once(signed_in: GuardedPage) -> None:
    page = signed_in.page
    fill_webhook(page, "https://hooks.example.com/llmtap", f"Env=prod\nteam={EVIL_VALUE}", "25")
    expect(page).to_have_url(re.compile(r"/webhooks/new/"))
    shown = page.get_by_label("the signing secret")
    expect(shown).to_have_value(re.compile(r"^whsec_"))
    secret = shown.input_value()
    facts = page.locator(".facts-list")
    expect(facts).to_contain_text("env=prod")
    expect(facts).to_contain_text(f"team={EVIL_VALUE}")
    expect(page.locator("main pre")).to_contain_text("def verify(secret: str, body: bytes")
    expect(page.locator("main img[src='x']")).to_have_count(0)

    signed_in.guard.expect_console_error(r"status of 410")
    page.reload()
    expect(page.locator("main")).to_contain_text("already shown")
    expect(page.get_by_label("the signing secret")).to_have_count(0)
    assert secret not in page.content()

    page.goto("/webhooks")
    row = page.locator("table.webhooks tbody tr").filter(has_text="hooks.example.com/llmtap")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("25%")
    expect(row).to_contain_text(f"team={EVIL_VALUE}"[:40])
    assert secret not in page.content()


def test_a_metadata_address_is_a_form_error(signed_in: GuardedPage) -> None:
    page = signed_in.page
    page.goto("/webhooks")
    before = page.locator("table.webhooks tbody tr").count()
    signed_in.guard.expect_console_error(r"status of 400")
    fill_webhook(page, "http://169.254.169.254/latest/meta-data/", "env=prod")
    expect(page.get_by_role("alert")).to_contain_text("url:")
    expect(page.get_by_role("alert")).to_contain_text("deliveries may not go there")
    expect(page.get_by_label("URL")).to_have_value("http://169.254.169.254/latest/meta-data/")
    expect(page.get_by_label("property filters")).to_have_value("env=prod")
    page.goto("/webhooks")
    expect(page.locator("table.webhooks tbody tr")).to_have_count(before)
    expect(page.locator("table.webhooks")).not_to_contain_text("169.254.169.254")


def test_the_posthog_project_is_saved_with_its_key_hidden_and_removed(
    signed_in: GuardedPage,
) -> None:
    page = signed_in.page
    key = "phc_browserSecretProjectKey7Q3z"
    page.goto("/webhooks")
    expect(page.locator("main")).to_contain_text("No PostHog project")
    page.get_by_label("host").fill("eu.i.posthog.com")
    page.get_by_label("project API key").fill(key)
    page.get_by_role("button", name="Save the PostHog project").click()
    expect(page.get_by_role("status")).to_contain_text("PostHog project saved")
    expect(page.locator("main")).to_contain_text("https://eu.i.posthog.com")
    expect(page.locator("main")).to_contain_text("…7Q3z")
    assert key not in page.content() and "browserSecret" not in page.content()
    expect(page.get_by_label("project API key")).to_have_value("")

    page.get_by_role("button", name="Remove the PostHog project").click()
    expect(page.get_by_role("status")).to_contain_text("PostHog project removed")
    expect(page.locator("main")).to_contain_text("No PostHog project")
