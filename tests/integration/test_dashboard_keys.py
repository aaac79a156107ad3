"""The Keys page over HTTP against the real API and stores: a new key is shown once (POST,
redirect, one GET; never on the list, never on a reload), every form needs the CSRF token,
revoking is scoped to the session's organization (another organization's key id is refused and
that key keeps working), revoking the session's own key signs the browser out, and key names are
text in the HTML bytes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.api_backend import ApiBackend
from support.dashboard import csrf_of, signed_in

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(1)>\"'><"
KEY = re.compile(r"sk-llmtap-[A-Za-z0-9_\-]{20,}")


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data") as opened:
        yield opened


def _create(client: httpx.Client, name: str) -> httpx.Response:
    return client.post("/keys", data={"name": name, "csrf": csrf_of(client)})


def _api_works(backend: ApiBackend, key: str) -> bool:
    response = httpx.get(
        backend.url + "/v1/requests", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    return response.status_code == 200


def test_a_new_key_is_shown_once_and_never_on_the_list(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    with signed_in(backend.url, key) as client:
        created = _create(client, "ci runner")
        assert created.status_code == 303
        assert created.headers["cache-control"] == "no-store"
        assert not KEY.search(created.text) and not KEY.search(str(created.headers))
        shown = client.get(created.headers["location"])
        assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
        new_keys = [k for k in KEY.findall(shown.text) if k != key]
        assert len(new_keys) == 1 and "shown only this once" in shown.text
        new_key = new_keys[0]
        assert _api_works(backend, new_key)
        again = client.get(created.headers["location"])
        assert again.status_code == 410 and new_key not in again.text
        listing = client.get("/keys")
        assert "ci runner" in listing.text and new_key not in listing.text
        assert new_key[:14] in listing.text  # the prefix tells keys apart
    assert [k.name for k in backend.records.list_keys(org)] == ["acme-key", "ci runner"]


def test_another_browser_cannot_pick_up_a_new_key(backend: ApiBackend) -> None:
    _, key = backend.new_org_key("acme")
    with signed_in(backend.url, key) as first, signed_in(backend.url, key) as second:
        created = _create(first, "mine")
        stolen = second.get(created.headers["location"])
        assert stolen.status_code == 410 and not KEY.findall(stolen.text.replace(key, ""))
        assert first.get(created.headers["location"]).status_code == 200


def test_creating_and_revoking_need_the_csrf_token(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    other_id, _ = backend.records.create_key(org, "other")
    with signed_in(backend.url, key) as client:
        token = csrf_of(client)
        assert client.post("/keys", data={"name": "x"}).status_code == 403
        assert client.post("/keys", data={"name": "x", "csrf": "wrong"}).status_code == 403
        cross_site = client.post(
            "/keys", data={"name": "x", "csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross_site.status_code == 403
        assert client.post(f"/keys/{other_id}/revoke").status_code == 403
        evil_origin = client.post(
            f"/keys/{other_id}/revoke", data={"csrf": token}, headers={"Origin": "http://evil"}
        )
        assert evil_origin.status_code == 403
    assert [k.name for k in backend.records.list_keys(org)] == ["acme-key", "other"]
    assert not any(k.revoked for k in backend.records.list_keys(org))


def test_revoking_asks_first_then_revokes_only_the_organizations_own_key(
    backend: ApiBackend,
) -> None:
    org_a, key_a = backend.new_org_key("acme")
    org_b, key_b = backend.new_org_key("bravo")
    b_id = backend.records.list_keys(org_b)[0].id
    a_other_id, _ = backend.records.create_key(org_a, "to revoke")
    with signed_in(backend.url, key_a) as client:
        token = csrf_of(client)
        assert client.get(f"/keys/{b_id}/revoke").status_code == 404
        refused = client.post(f"/keys/{b_id}/revoke", data={"csrf": token})
        assert refused.status_code == 404 and "bravo" not in refused.text
        assert b_id not in client.get("/keys").text
        confirm = client.get(f"/keys/{a_other_id}/revoke")
        assert confirm.status_code == 200 and 'method="post"' in confirm.text
        assert not backend.records.list_keys(org_a)[1].revoked  # asking revokes nothing
        done = client.post(f"/keys/{a_other_id}/revoke", data={"csrf": token})
        assert done.status_code == 303
        assert "was revoked" in client.get(done.headers["location"]).text
    assert not backend.records.list_keys(org_b)[0].revoked and _api_works(backend, key_b)
    assert backend.records.list_keys(org_a)[1].revoked


def test_revoking_the_sessions_own_key_signs_out_with_a_message(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    key_id = backend.records.list_keys(org)[0].id
    with signed_in(backend.url, key) as client, signed_in(backend.url, key) as other:
        answer = client.post(f"/keys/{key_id}/revoke", data={"csrf": csrf_of(client)})
        assert answer.status_code == 200
        assert "you are signed out" in answer.text
        assert "llmtap_session" not in client.cookies
        for browser in (client, other):
            after = browser.get("/keys")
            assert after.status_code == 303 and after.headers["location"].startswith("/login")


def test_key_names_render_as_text_and_bad_names_are_refused(backend: ApiBackend) -> None:
    _, key = backend.new_org_key("acme")
    with signed_in(backend.url, key) as client:
        created = _create(client, HOSTILE)
        shown = client.get(created.headers["location"]).text
        listing = client.get("/keys").text
        for page in (shown, listing):
            assert "<script>alert" not in page and "<img src=x" not in page
            assert "\"'><" not in page
            assert "&lt;script&gt;" in page
        assert _create(client, "").status_code == 400
        assert _create(client, "x" * 201).status_code == 400
        assert _create(client, "a\x00b").status_code == 400
