"""The Sessions, Users and Properties pages over HTTP against the real API and stores: each renders
its organization's rows (sorted, paged, as htmx partials too), another organization's session or
user id shows nothing of theirs, and hostile session names/paths, user ids and property
names/values are text in the HTML bytes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend
from support.dashboard import signed_in

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
QUOTES = "\"'><"
HOSTILE = f"{SCRIPT}{IMG}{QUOTES}"
PATHS = ["/plan", "/plan/search", "/plan/search/fetch", "/plan/search/fetch", "/answer"]


def _row(org: str, request_id: str, created: float, **fields: object) -> RequestRow:
    values: dict[str, object] = {
        "request_id": request_id,
        "org_id": org,
        "created_unix_ms": created,
        "source": "proxy",
        "provider": "openai",
        "method": "POST",
        "target_url": "https://api.openai.com/v1/chat/completions",
        "path": "/v1/chat/completions",
        "status": 200,
        "model": "gpt-4o",
        "usage_source": "provider",
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "cost_nano_usd": 1000,
        "cost_source": "genai-prices",
        "latency_ms": 100.0,
    }
    values.update(fields)
    return RequestRow(**values)  # type: ignore[arg-type]


class Seeded:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.org_a, self.key_a = backend.new_org_key("acme")
        self.org_b, self.key_b = backend.new_org_key("bravo")
        now = time.time() * 1000.0
        rows = [
            _row(
                self.org_a,
                f"plan-{i}",
                now - 600_000 + i * 1000,
                session_id="sess-plan",
                session_name="trip planner",
                session_path=path,
                user_id="alice",
                properties={"env": "prod", "team": "search"},
                latency_ms=200.0 + i,
                status=500 if i == 2 else 200,
            )
            for i, path in enumerate(PATHS)
        ]
        rows += [
            _row(
                self.org_a,
                f"bob-{i}",
                now - 300_000 + i * 1000,
                session_id=f"sess-bob-{i}",
                user_id="bob",
                properties={"env": "dev"},
                cost_nano_usd=5_000_000,
            )
            for i in range(3)
        ]
        rows.append(
            _row(
                self.org_a,
                "hostile",
                now - 100_000,
                session_id=f"s{HOSTILE}",
                session_name=f"n{HOSTILE}",
                session_path=f"/p{HOSTILE}/q",
                user_id=f"u{HOSTILE}",
                properties={f"p{HOSTILE}".lower(): f"v{HOSTILE}", "env": f"e{HOSTILE}"},
            )
        )
        b_rows = [
            _row(
                self.org_b,
                f"b-secret-{i}",
                now - 200_000 + i,
                session_id="sess-plan" if i == 0 else "banana-session",
                session_name="banana-name",
                session_path="/banana-path",
                user_id="alice" if i == 0 else "banana-user",
                properties={"env": "banana-value", "banana-prop": "x"},
            )
            for i in range(3)
        ]
        backend.write(rows)
        backend.write(b_rows)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    data: Path = tmp_path_factory.mktemp("dashboard-groups") / "data"
    with ApiBackend(data) as backend:
        yield Seeded(backend)


@pytest.fixture(scope="module")
def client_a(seeded: Seeded) -> Iterator[httpx.Client]:
    with signed_in(seeded.backend.url, seeded.key_a) as client:
        yield client


@pytest.fixture(scope="module")
def client_b(seeded: Seeded) -> Iterator[httpx.Client]:
    with signed_in(seeded.backend.url, seeded.key_b) as client:
        yield client


def _hrefs(page: str, prefix: str) -> list[str]:
    return re.findall(rf'<tr data-href="{re.escape(prefix)}([^"?]+)', page)


def _assert_no_markup(page: str, where: str) -> None:
    assert SCRIPT not in page and IMG not in page, where
    assert "onerror=alert(1)>" not in page and QUOTES not in page, where
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert ' src="/static/' in tag or 'type="application/json"' in tag, (where, tag)


def test_sessions_list_sorts_pages_and_is_a_partial_too(client_a: httpx.Client) -> None:
    page = client_a.get("/sessions")
    assert page.status_code == 200
    ids = _hrefs(page.text, "/sessions/")
    assert len(ids) == 5 and ids[0] == quote(f"s{HOSTILE}", safe="/")  # newest first
    assert "trip planner" in page.text and "banana" not in page.text
    by_requests = client_a.get("/sessions", params={"sort": "requests"})
    assert _hrefs(by_requests.text, "/sessions/")[0] == "sess-plan"
    by_cost = client_a.get("/sessions", params={"sort": "cost", "order": "asc"})
    assert _hrefs(by_cost.text, "/sessions/")[-1].startswith("sess-bob-")
    partial = client_a.get("/sessions", headers={"HX-Request": "true"})
    assert partial.text.lstrip().startswith('<div id="results"') and "<html" not in partial.text
    only_dev = client_a.get(
        "/sessions",
        params={"f": json.dumps({"field": "properties.env", "op": "eq", "value": "dev"})},
    )
    assert sorted(_hrefs(only_dev.text, "/sessions/")) == [f"sess-bob-{i}" for i in range(3)]
    assert client_a.get("/sessions", params={"sort": "nope"}).status_code == 400
    assert client_a.get("/sessions", params={"cursor": "garbage"}).status_code == 200


def test_sessions_list_pages_by_keyset(
    seeded: Seeded, client_a: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtap.dashboard import group_list

    monkeypatch.setattr(group_list, "PAGE_ROWS", 2)
    seen: list[str] = []
    url: str | None = "/sessions?sort=requests"
    while url is not None:
        page = client_a.get(url)
        assert page.status_code == 200
        seen += _hrefs(page.text, "/sessions/")
        found = re.search(r'<a href="([^"]+)" hx-get="[^"]+"[^>]*>next page', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
        assert len(seen) <= 10
    assert len(seen) == len(set(seen)) == 5 and seen[0] == "sess-plan"


def test_session_view_is_a_tree_of_paths_with_a_timeline(client_a: httpx.Client) -> None:
    page = client_a.get("/sessions/sess-plan")
    assert page.status_code == 200
    text = page.text
    for name in ("plan", "search", "fetch", "answer"):
        assert f"<code>{name}</code>" in text, name
    # every call links to its request; every call has a bar
    for i in range(len(PATHS)):
        assert f'href="/requests/plan-{i}"' in text
    assert text.count('<rect class="bar') == len(PATHS)
    assert text.count('<rect class="bar err"') == 1
    # the fetch node has its two calls; the plan subtree counts 4
    assert "2 calls" in text and "4 calls" in text and "5 calls" in text
    assert "banana" not in text


def test_a_big_session_is_capped_with_a_notice(
    seeded: Seeded, client_a: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtap.dashboard import sessions

    monkeypatch.setattr(sessions, "MAX_CALLS", 3)
    page = client_a.get("/sessions/sess-plan")
    assert page.status_code == 200
    assert page.text.count('<rect class="bar') == 3
    assert "more calls than the 3 shown" in page.text
    assert "5 calls" in page.text  # the figures still count every call


def test_another_organizations_session_and_user_show_nothing_of_theirs(
    seeded: Seeded, client_a: httpx.Client, client_b: httpx.Client
) -> None:
    assert client_b.get("/sessions/sess-bob-0").status_code == 404
    assert client_b.get("/sessions/" + quote(f"s{HOSTILE}", safe="")).status_code == 404
    # the same session id in both: each sees only its own calls
    b_view = client_b.get("/sessions/sess-plan")
    assert b_view.status_code == 200
    assert "plan-0" not in b_view.text and "trip planner" not in b_view.text
    assert "b-secret-0" in b_view.text
    bob = client_b.get("/users/bob")
    assert bob.status_code == 200 and "bob-0" not in bob.text
    assert "No calls match" in bob.text
    alice_b = client_b.get("/users/alice").text
    assert "b-secret-0" in alice_b and "plan-0" not in alice_b
    for path in ("/sessions", "/users", "/properties", "/properties/env"):
        page_b = client_b.get(path).text
        for marker in ("sess-plan-", "trip planner", "bob", "prod", "onerror", seeded.org_a):
            assert marker not in page_b, (path, marker)
        page_a = client_a.get(path).text
        assert "banana" not in page_a, path
    # an organization in the URL changes nothing
    hand_edited = client_b.get("/sessions", params={"org_id": seeded.org_a, "org": seeded.org_a})
    assert "trip planner" not in hand_edited.text


def test_users_list_and_user_page(client_a: httpx.Client) -> None:
    page = client_a.get("/users", params={"sort": "requests"})
    assert page.status_code == 200
    users = _hrefs(page.text, "/users/")
    assert users[:2] == ["alice", "bob"] and len(users) == 3
    assert "20.0%" in page.text  # alice: 1 failed of 5
    view = client_a.get("/users/alice")
    assert view.status_code == 200
    assert 'id="chart-requests"' in view.text and 'id="chart-latency"' in view.text
    assert re.findall(r'data-href="/requests/([^"]+)"', view.text) == [
        f"plan-{i}" for i in reversed(range(len(PATHS)))
    ]
    by_latency = client_a.get("/users/alice", params={"sort": "latency", "order": "asc"})
    assert re.findall(r'data-href="/requests/([^"]+)"', by_latency.text)[0] == "plan-0"
    partial = client_a.get("/users/alice", headers={"HX-Request": "true"})
    assert partial.text.lstrip().startswith('<div id="results"')
    # the table's sort links stay on the user's page
    assert 'href="/users/alice?sort=cost' in view.text


def test_properties_names_and_a_breakdown(client_a: httpx.Client) -> None:
    names = client_a.get("/properties")
    assert names.status_code == 200
    assert 'href="/properties/env"' in names.text and 'href="/properties/team"' in names.text
    found = client_a.get("/properties", params={"find": "tea"}, headers={"HX-Request": "true"})
    assert 'href="/properties/team"' in found.text and "/properties/env" not in found.text
    env = client_a.get("/properties/env")
    assert env.status_code == 200
    rows = re.findall(r"<tr data-href=\"([^\"]+)\">\s*<td><a [^>]+>([^<]*)</a>", env.text)
    values = [value for _, value in rows]
    assert values[:2] == ["prod", "dev"]  # by requests
    link = rows[0][0].replace("&amp;", "&")
    assert link.startswith("/requests?f=")
    drilled = client_a.get(link)
    assert len(re.findall(r'data-href="/requests/([^"]+)"', drilled.text)) == len(PATHS)
    by_cost = client_a.get("/properties/env", params={"sort": "cost"})
    assert (
        re.findall(r"<tr data-href=\"[^\"]+\">\s*<td><a [^>]+>([^<]*)</a>", by_cost.text)[0]
        == "dev"
    )
    assert client_a.get("/properties/a%00b").status_code == 400
    unknown = client_a.get("/properties/" + "x" * 500)
    assert unknown.status_code == 200 and "No calls with this property" in unknown.text


def test_hostile_names_paths_ids_and_properties_render_as_text(client_a: httpx.Client) -> None:
    session_url = "/sessions/" + quote(f"s{HOSTILE}", safe="")
    user_url = "/users/" + quote(f"u{HOSTILE}", safe="")
    property_url = "/properties/" + quote(f"p{HOSTILE}".lower(), safe="")
    pages = {
        "sessions": client_a.get("/sessions"),
        "session": client_a.get(session_url),
        "users": client_a.get("/users"),
        "user": client_a.get(user_url),
        "names": client_a.get("/properties", params={"find": "p<"}),
        "property": client_a.get(property_url),
        "env": client_a.get("/properties/env"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        _assert_no_markup(response.text, name)
    assert "&lt;script&gt;" in pages["session"].text and "&lt;img" in pages["session"].text
    assert "&lt;script&gt;" in pages["user"].text
    assert "&lt;script&gt;" in pages["env"].text
