"""The Requests page's export links in a real browser: a filter set with the builder (and a sort
chosen by clicking a heading), then the CSV / JSONL link downloaded as a person does, parsed, and
compared row by row with ``POST /v1/requests/search`` for the same filter and order, asked with
the key. A formula-looking user id is neutralized in the CSV; organization B exporting with A's
filter in the URL gets nothing of A's."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect

from support.browser import GuardedPage, PageAs, Served

FEATURE = "export-me"
FORMULA_USER = '=HYPERLINK("http://x.invalid","click")'


@dataclass(frozen=True)
class Exported:
    wanted: list[str]
    key_b: str


@pytest.fixture(scope="module")
def exported(served: Served) -> Exported:
    wanted = []
    for i in range(6):
        user = FORMULA_USER if i == 0 else f"user-{i % 3}"
        headers = {"Helicone-User-Id": user, "Helicone-Property-Feature": FEATURE}
        # different lengths: different token counts, costs and so a telling sort
        wanted.append(served.call("export " + "word " * (i * 7), headers))
    other = served.call("not exported", {"Helicone-Property-Feature": "other"})
    key_b = served.new_org_key("bravo")
    b_call = served.call("b's", {"Helicone-Property-Feature": "b-feature"}, key=key_b)
    served.wait_logged(*wanted, other)
    served.wait_logged(b_call, key=key_b)
    return Exported(wanted, key_b)


def api_rows(served: Served, tree: object, sort: str = "created", order: str = "desc") -> Any:
    start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    body = {"filter": tree, "start": start, "sort": sort, "order": order, "limit": 1000}
    headers = {"Authorization": f"Bearer {served.key}"}
    answer = httpx.post(
        served.dashboard_url + "/v1/requests/search", json=body, headers=headers, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def filter_on_feature(page: Page) -> None:
    """The builder, as a person uses it: properties.feature = export-me, Apply."""
    page.goto("/requests")
    page.get_by_role("button", name="+ condition").click()
    page.get_by_role("combobox", name="field").fill("properties.feature")
    page.get_by_role("combobox", name="value").fill(FEATURE)
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("table.requests tbody tr[data-href]")).to_have_count(6)


def download(page: Page, link: str) -> str:
    with page.expect_download() as info:
        page.locator(".export").get_by_role("link", name=link).click()
    path = info.value.path()
    return path.read_text(encoding="utf-8")


def shown_ids(page: Page) -> list[str]:
    hrefs = page.locator("table.requests tbody tr[data-href]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-href'))"
    )
    return [str(h).removeprefix("/requests/") for h in hrefs]


FEATURE_TREE = {"field": "properties.feature", "op": "eq", "value": FEATURE}


def test_csv_export_matches_the_api(
    signed_in: GuardedPage, served: Served, exported: Exported
) -> None:
    page = signed_in.page
    filter_on_feature(page)
    rows = list(csv.DictReader(io.StringIO(download(page, "CSV"))))
    expected = api_rows(served, FEATURE_TREE)
    assert [r["request_id"] for r in rows] == [e["request_id"] for e in expected]
    assert sorted(e["request_id"] for e in expected) == sorted(exported.wanted)
    assert [r["request_id"] for r in rows] == shown_ids(page)
    for row, api in zip(rows, expected, strict=True):
        assert row["created_at"] == api["created_at"]
        assert int(row["status"]) == api["status"]
        assert row["model"] == api["model"]
        assert int(row["input_tokens"]) == api["input_tokens"]
        assert int(row["output_tokens"]) == api["output_tokens"]
        assert float(row["cost_usd"]) == api["cost_usd"]
        assert float(row["latency_ms"]) == api["latency_ms"]
        assert json.loads(row["properties"]) == api["properties"]
        if api["user_id"] == FORMULA_USER:
            assert row["user_id"] == "'" + FORMULA_USER  # shown, not run, by a spreadsheet
        else:
            assert row["user_id"] == api["user_id"]


def test_jsonl_export_follows_the_sort_clicked(
    signed_in: GuardedPage, served: Served, exported: Exported
) -> None:
    page = signed_in.page
    filter_on_feature(page)
    # sort by tokens, then reverse (htmx swaps the table and pushes the URL)
    page.locator("table.requests thead").get_by_role("link", name="Tokens in/out").click()
    expect(page).to_have_url(re.compile(r"sort=tokens$"))
    page.locator("table.requests thead").get_by_role("link", name="Tokens in/out ▼").click()
    expect(page).to_have_url(re.compile(r"sort=tokens.*order=asc"))
    expected = api_rows(served, FEATURE_TREE, sort="tokens", order="asc")
    expect(page.locator("table.requests tbody tr[data-href]").first).to_have_attribute(
        "data-href", f"/requests/{expected[0]['request_id']}"
    )
    lines = [json.loads(line) for line in download(page, "JSONL").splitlines() if line]
    assert [x["request_id"] for x in lines] == [e["request_id"] for e in expected]
    assert lines == expected  # the lines are the API's rows


def test_organization_b_exports_nothing_of_a(page_as: PageAs, exported: Exported) -> None:
    with page_as(exported.key_b) as b:
        page = b.page
        # A's filter typed into the URL: the page and both exports are empty
        page.goto(f"/requests?f={quote(json.dumps(FEATURE_TREE))}&range=30d")
        expect(page.locator("table.requests td.empty")).to_be_visible()
        text = download(page, "CSV")
        assert text.splitlines()[0].startswith("request_id,")
        assert len(text.splitlines()) == 1, text
        assert download(page, "JSONL") == ""
        # and without a filter, B's export is B's one call
        page.goto("/requests?range=30d")
        rows = list(csv.DictReader(io.StringIO(download(page, "CSV"))))
        assert [json.loads(r["properties"]) for r in rows] == [{"feature": "b-feature"}]
