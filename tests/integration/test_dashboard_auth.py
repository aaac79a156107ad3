"""Signing in to the dashboard, over HTTP against the real API and stores: the cookie's flags,
pages that need a session, CSRF and same-origin checks on every POST, where ``next`` may send
the browser, the limit on failed sign-ins, and a revoked key ending its sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.api_backend import ApiBackend
from support.dashboard import csrf_of, signed_in, with_session
from support.probes import wait_for

MAX_FAILURES = 3


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiBackend]:
    data: Path = tmp_path_factory.mktemp("dashboard-auth") / "data"
    with ApiBackend(
        data, dashboard_login_max_failures=MAX_FAILURES, key_cache_ttl_s=0.2
    ) as backend:
        yield backend


@pytest.fixture(scope="module")
def key(backend: ApiBackend) -> str:
    return backend.new_org_key("acme")[1]


PAGES = ["/", "/requests", "/requests/some-id", "/requests/some-id/body/request", "/ui/properties"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_session(backend: ApiBackend, path: str) -> None:
    with httpx.Client(base_url=backend.url) as client:
        page = client.get(path, params={"range": "7d"})
        assert page.status_code == 303
        location = page.headers["location"]
        assert location.startswith("/login?next=%2F")
        # a key is not a session: the dashboard does not take the API's bearer token
        with_key = client.get(path, headers={"Authorization": "Bearer sk-llmtap-whatever"})
        assert with_key.status_code == 303
        # an htmx partial asks the page itself to go to the sign-in page
        partial = client.get(path, headers={"HX-Request": "true"})
        assert partial.status_code == 401 and partial.headers["hx-redirect"].startswith("/login")
        forged = client.get(path, headers=with_session("forged-token"))
        assert forged.status_code == 303


def test_sign_in_sets_a_strict_httponly_cookie_and_signs_out(backend: ApiBackend, key: str) -> None:
    with httpx.Client(base_url=backend.url) as client:
        response = client.post("/login", data={"key": key, "next": "/requests?range=7d"})
        assert response.status_code == 303
        assert response.headers["location"] == "/requests?range=7d"
        cookie = response.headers["set-cookie"]
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # plain http here; https below
        token = client.cookies["llmtap_session"]
        assert len(token) >= 43  # 32 random bytes
        assert client.get("/").status_code == 200
        csrf = csrf_of(client)
        out = client.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert "llmtap_session=" in out.headers["set-cookie"]
        # the old token no longer signs anyone in, even if the browser kept it
        replay = httpx.get(f"{backend.url}/", headers=with_session(token))
        assert replay.status_code == 303


def test_the_cookie_is_secure_when_the_request_came_over_https(
    backend: ApiBackend, key: str
) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (a TLS-terminating proxy on the machine)
    response = httpx.post(
        f"{backend.url}/login", data={"key": key}, headers={"X-Forwarded-Proto": "https"}
    )
    assert response.status_code == 303
    assert "secure" in {p.strip().lower() for p in response.headers["set-cookie"].split(";")}


def test_sign_out_needs_the_csrf_token_and_the_same_origin(backend: ApiBackend, key: str) -> None:
    with signed_in(backend.url, key) as client:
        csrf = csrf_of(client)
        refused = [
            client.post("/logout"),
            client.post("/logout", data={"csrf": "not-the-token"}),
            client.post("/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}),
            client.post("/logout", data={"csrf": csrf}, headers={"Origin": "null"}),
            client.post("/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}),
            client.post("/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "same-site"}),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        assert "Content-Security-Policy" in refused[0].headers
        assert client.get("/").status_code == 200  # still signed in
        host = backend.url.removeprefix("http://")
        same = client.post(
            "/logout",
            headers={"X-CSRF-Token": csrf, "Origin": backend.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert same.status_code == 303, host
        assert client.get("/").status_code == 303


def test_a_sign_in_posted_from_another_site_is_refused(backend: ApiBackend, key: str) -> None:
    response = httpx.post(
        f"{backend.url}/login", data={"key": key}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "/%0d%0aSet-Cookie:x=y",
        "evil.example",
        "/ok\r\nLocation: https://evil.example",
    ],
)
def test_next_only_ever_leads_to_a_local_path(backend: ApiBackend, key: str, target: str) -> None:
    response = httpx.post(f"{backend.url}/login", data={"key": key, "next": target})
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/") and not location.startswith("//") and "\\" not in location
    assert "evil" not in location or location.startswith("/%0d%0a")
    page = httpx.get(f"{backend.url}/login", params={"next": target})
    assert "evil.example" not in page.text or target.startswith("/%0d")


def test_revoking_the_key_ends_its_sessions(backend: ApiBackend) -> None:
    org = backend.records.create_org("revoked-co")
    key_id, key = backend.records.create_key(org, "k")
    with signed_in(backend.url, key) as client:
        assert client.get("/requests").status_code == 200
        backend.records.revoke_key(key_id)
        wait_for(
            lambda: client.get("/requests").status_code == 303,
            timeout_s=10,
            what="the session to end after its key was revoked",
        )


# last: it leaves 127.0.0.1 unable to sign in for the rest of the window
def test_a_wrong_key_gets_a_clear_message_and_failures_are_limited(
    backend: ApiBackend, key: str
) -> None:
    with httpx.Client(base_url=backend.url) as client:
        for _ in range(MAX_FAILURES):
            wrong = client.post("/login", data={"key": "sk-llmtap-not-a-key"})
            assert wrong.status_code == 401
            assert "That key is not valid (or was revoked)" in wrong.text
            assert "llmtap_session" not in client.cookies
        # past the limit even the right key waits: guessing cannot go on at full speed
        limited = client.post("/login", data={"key": key})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "Too many failed sign-ins" in limited.text
