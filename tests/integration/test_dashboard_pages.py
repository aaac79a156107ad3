"""The dashboard's pages over HTTP against the real API and stores: each organization sees only
its own calls (hand-edited ids included), logged values render as text (checked in the HTML
bytes), big values and bodies do not break a page, the security headers, the static files and
``/v1/docs`` served from this machine only, and the filter and look-ups."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmtap.dashboard.render import json_block
from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend
from support.dashboard import signed_in

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
HOSTILE = f"{SCRIPT}{IMG}</script>"
BIG_VALUE = "v" * 10_000
BIG_BODY = 4 * 1024 * 1024 + 100


class Orgs:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.org_a, self.key_a = backend.new_org_key("acme")
        self.org_b, self.key_b = backend.new_org_key("bravo")
        now = time.time() * 1000.0
        rows = []
        for i in range(8):
            row = self.row(self.org_a, f"a-call-{i}", now - 60_000 * (i + 1))
            row.request_body_key = backend.put_body(
                row,
                "request",
                json.dumps(
                    {"model": "gpt-4o", "messages": [{"role": "user", "content": f"apple {i}"}]}
                ).encode(),
            )
            rows.append(row)
        hostile = self.row(self.org_a, "a-hostile", now - 30_000)
        hostile.model = f"m{HOSTILE}"
        hostile.user_id = f"u{HOSTILE}"
        hostile.properties = {f"p{HOSTILE}": f"v{HOSTILE}", "big": BIG_VALUE}
        hostile.request_body_key = backend.put_body(
            hostile,
            "request",
            json.dumps(
                {
                    "model": "x",
                    "messages": [
                        {"role": "system", "content": f"s{HOSTILE}"},
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": f"t{HOSTILE}"},
                                {
                                    "type": "image_url",
                                    "image_url": {"url": "https://evil.example/i.png"},
                                },
                                {
                                    "type": "image_url",
                                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                                },
                            ],
                        },
                    ],
                }
            ).encode(),
        )
        hostile.response_body_key = backend.put_body(hostile, "response", b"x" * BIG_BODY)
        rows.append(hostile)
        b_rows = [self.row(self.org_b, f"b-secret-{i}", now - 60_000 * i) for i in range(3)]
        b_rows[0].model = "banana-model"
        b_rows[0].user_id = "banana-user"
        b_rows[0].properties = {"banana-prop": "banana-value"}
        backend.write(rows)
        backend.write(b_rows)

    @staticmethod
    def row(org: str, request_id: str, created: float) -> RequestRow:
        return RequestRow(
            request_id=request_id,
            org_id=org,
            created_unix_ms=created,
            source="proxy",
            provider="openai",
            method="POST",
            target_url="https://api.openai.com/v1/chat/completions",
            path="/v1/chat/completions",
            status=200,
            model="gpt-4o",
            user_id="alice",
            properties={"env": "prod"},
            usage_source="provider",
            input_tokens=10,
            output_tokens=5,
            total_tokens=15,
            cost_nano_usd=1000,
            cost_source="genai-prices",
            latency_ms=120.0,
            ttft_ms=30.0,
        )


@pytest.fixture(scope="module")
def orgs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orgs]:
    data: Path = tmp_path_factory.mktemp("dashboard-pages") / "data"
    with ApiBackend(data) as backend:
        yield Orgs(backend)


@pytest.fixture(scope="module")
def client_a(orgs: Orgs) -> Iterator[httpx.Client]:
    with signed_in(orgs.backend.url, orgs.key_a) as client:
        yield client


@pytest.fixture(scope="module")
def client_b(orgs: Orgs) -> Iterator[httpx.Client]:
    with signed_in(orgs.backend.url, orgs.key_b) as client:
        yield client


def _scripts(page: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>", page)


def test_another_organizations_request_is_a_404_like_a_missing_one(
    orgs: Orgs, client_b: httpx.Client
) -> None:
    for path in ("/requests/a-call-1", "/requests/a-hostile/body/request", "/requests/no-such"):
        response = client_b.get(path)
        assert response.status_code == 404, path
        assert "apple" not in response.text and orgs.org_a not in response.text
    assert client_b.get("/requests/b-secret-0").status_code == 200


def test_each_organization_sees_only_its_own_calls(
    orgs: Orgs, client_a: httpx.Client, client_b: httpx.Client
) -> None:
    for path in (
        "/",
        "/requests",
        "/requests?sort=cost",
        "/ui/properties?q=",
        "/ui/property-values?name=env",
    ):
        page_b = client_b.get(path)
        assert page_b.status_code == 200, path
        for marker in ("a-call", "a-hostile", "apple", orgs.org_a, "onerror"):
            assert marker not in page_b.text, (path, marker)
        page_a = client_a.get(path)
        assert page_a.status_code == 200, path
        assert "banana" not in page_a.text and "b-secret" not in page_a.text, path
    requests_b = client_b.get("/requests").text
    assert requests_b.count('data-href="/requests/b-secret-') == 3
    assert "a-call" not in requests_b
    # an organization in the URL changes nothing: the session decides
    hand_edited = client_b.get("/requests", params={"org_id": orgs.org_a, "org": orgs.org_a})
    assert "a-call" not in hand_edited.text


def test_logged_values_render_as_text(client_a: httpx.Client) -> None:
    pages = {
        "requests": client_a.get("/requests").text,
        "overview": client_a.get("/").text,
        "view": client_a.get("/requests/a-hostile").text,
        "names": client_a.get("/ui/properties", params={"q": "p<"}).text,
        "values": client_a.get("/ui/property-values", params={"name": f"p{HOSTILE}"}).text,
        "filter": client_a.get(
            "/requests", params={"f": json.dumps({"field": "model", "op": "eq", "value": HOSTILE})}
        ).text,
    }
    for name, page in pages.items():
        assert SCRIPT not in page and IMG not in page, name
        assert "onerror=alert(1)>" not in page, name
        for tag in _scripts(page):  # only our files and JSON data blocks
            assert ' src="/static/' in tag or 'type="application/json"' in tag, (name, tag)
    escaped = html.escape(SCRIPT, quote=False)
    assert escaped in pages["view"]  # the prompt, the model, the user id, the property
    assert html.escape(IMG, quote=False) in pages["view"]
    assert "evil.example/i.png" in pages["view"]  # shown as text
    assert 'src="https://evil.example' not in pages["view"]
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in pages["view"]
    assert "style=" not in pages["view"]  # the CSP forbids inline styles too


def test_json_blocks_cannot_end_their_script_element() -> None:
    block = str(json_block({"v": "</script><script>alert(1)</script>", "w": "a&b\u2028"}))
    assert "<" not in block and ">" not in block and "&" not in block
    assert json.loads(block) == {"v": "</script><script>alert(1)</script>", "w": "a&b\u2028"}


def test_a_huge_property_and_a_4mib_body_do_not_break_the_page(client_a: httpx.Client) -> None:
    view = client_a.get("/requests/a-hostile")
    assert view.status_code == 200
    assert len(view.content) < 1_000_000  # the body is cut for display
    assert "show all (raw)" in view.text
    assert BIG_VALUE in view.text  # behind "show all"
    table = client_a.get("/requests")
    assert BIG_VALUE not in table.text and len(table.content) < 200_000
    raw = client_a.get("/requests/a-hostile/body/response")
    assert raw.status_code == 200 and len(raw.content) == BIG_BODY
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in raw.headers["content-security-policy"]


def test_every_page_sends_the_csp_and_needs_at_most_five_requests(
    orgs: Orgs, client_a: httpx.Client
) -> None:
    for path in ("/", "/requests", "/requests/a-call-0", "/login"):
        response = client_a.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "img-src 'self' data:" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"
        assets = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="([^"]+)"', response.text)
        assert 1 + len(assets) <= 5, assets
        for url in assets:
            assert url.startswith("/static/"), url
            assert client_a.get(url).status_code == 200


def test_static_files_have_their_types_and_are_cached_for_good(orgs: Orgs) -> None:
    expected = {
        "/static/app.js": "text/javascript; charset=utf-8",
        "/static/dashboard.js": "text/javascript; charset=utf-8",
        "/static/dashboard.css": "text/css; charset=utf-8",
        "/static/app.css": "text/css; charset=utf-8",
        "/static/vendor/htmx-2.0.11/htmx.min.js": "text/javascript; charset=utf-8",
        "/static/vendor/uplot-1.6.32/uPlot.iife.min.js": "text/javascript; charset=utf-8",
        "/static/vendor/uplot-1.6.32/uPlot.min.css": "text/css; charset=utf-8",
        "/static/vendor/htmx-2.0.11/LICENSE": "text/plain; charset=utf-8",
    }
    with httpx.Client(base_url=orgs.backend.url) as client:
        for path, content_type in expected.items():
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == content_type
            assert "immutable" in response.headers["cache-control"]
            again = client.get(path, headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304
        for path in (
            "/static/../settings.py",
            "/static/%2e%2e/auth.py",
            "/static/nope.js",
            "/static/",
        ):
            assert client.get(path).status_code == 404, path


def test_v1_docs_uses_local_assets_only(orgs: Orgs) -> None:
    with httpx.Client(base_url=orgs.backend.url) as client:
        page = client.get("/v1/docs")
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls, page.text
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            assert client.get(url).status_code == 200, url
        assert "cdn" not in page.text.lower() and "http" not in page.text.replace("http-equiv", "")
        assert "'unsafe-inline'" not in page.headers["content-security-policy"]
        assert client.get("/v1/openapi.json").status_code == 200


def test_the_filter_and_text_search_narrow_the_table(client_a: httpx.Client) -> None:
    tree = {
        "and": [
            {"field": "properties.env", "op": "eq", "value": "prod"},
            {"field": "request_id", "op": "in", "value": ["a-call-1", "a-call-2", "a-hostile"]},
        ]
    }
    page = client_a.get("/requests", params={"f": json.dumps(tree)})
    assert page.status_code == 200
    assert re.findall(r'data-href="/requests/([^"]+)"', page.text) == ["a-call-1", "a-call-2"]
    found = client_a.get("/requests", params={"q": "apple 3"})
    assert re.findall(r'data-href="/requests/([^"]+)"', found.text) == ["a-call-3"]
    partial = client_a.get("/requests", params={"q": "apple 3"}, headers={"HX-Request": "true"})
    assert partial.text.lstrip().startswith('<div id="results"') and "<html" not in partial.text
    for bad in ("{not json", json.dumps({"field": "nope", "op": "eq", "value": 1}), "[" * 5000):
        response = client_a.get("/requests", params={"f": bad})
        assert response.status_code == 400 and "filter:" in response.text
    sorted_page = client_a.get("/requests", params={"sort": "latency", "order": "asc"})
    assert sorted_page.status_code == 200
    assert client_a.get("/requests", params={"cursor": "garbage"}).status_code == 200


def test_the_unpriced_link_and_live_refresh_partial(client_a: httpx.Client) -> None:
    overview = client_a.get("/", params={"range": "1h"})
    assert overview.status_code == 200 and 'id="chart-requests"' in overview.text
    panels = client_a.get("/", params={"range": "1h"}, headers={"HX-Request": "true"})
    assert panels.text.lstrip().startswith('<div id="panels"')
    assert (
        "data-live-refresh" in overview.text
        and "checked" not in overview.text.split("data-live-refresh")[0][-200:]
    )
    custom = client_a.get("/", params={"start": "2020-01-01T00:00", "end": "2020-01-02T00:00"})
    assert custom.status_code == 200
