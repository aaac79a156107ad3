"""The Webhooks page over HTTP against the real API and stores: it lists the organization's
webhooks with their state (never a secret), shows a webhook's delivery history, resumes and
deletes only with the CSRF token and only the session's organization's webhooks, and a URL is
text in the HTML bytes. Its forms create a webhook (held to the API's rules, the secret shown
once, deliveries made with it) and set or remove the organization's PostHog project."""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import gateway_env
from llmtap.stores.factory import open_records_store
from llmtap.stores.records.integrations import PostHogProject
from llmtap.stores.records.outbox import Delivery, RetryPolicy
from llmtap.testing.mock_upstream import MockUpstream
from support.api_backend import ApiBackend
from support.dashboard import csrf_of, signed_in
from support.gateway import GatewayProcess
from support.probes import wait_for
from support.receiver import Receiver

HOSTILE_URL = "https://example.com/<script>alert(1)</script>"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data", analytics=False) as opened:
        yield opened


def test_the_page_lists_shows_history_resumes_and_deletes(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    created = httpx.post(
        backend.url + "/v1/webhooks",
        json={"url": HOSTILE_URL},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    hook, secret = created["id"], created["secret"]
    now = int(time.time() * 1000)
    backend.records.outbox.enqueue([], [Delivery(hook, org, "req-1", b"{}", "req-1")], now)
    (claimed,) = backend.records.outbox.claim(hook, now, 10, 60_000)
    policy = RetryPolicy(1000, 1000, 10**9, 1, 0)
    backend.records.outbox.failed(hook, [claimed], now, "answered 503", 503, policy)

    with signed_in(backend.url, key) as client:
        page = client.get("/webhooks")
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
        assert secret not in page.text and "paused" in page.text
        view = client.get(f"/webhooks/{hook}")
        assert view.status_code == 200 and "req-1" in view.text and "answered 503" in view.text

        assert client.post(f"/webhooks/{hook}/resume", data={}).status_code == 403
        resumed = client.post(f"/webhooks/{hook}/resume", data={"csrf": csrf_of(client)})
        assert resumed.status_code == 303
        target = backend.records.outbox.target(org, hook)
        assert target is not None and not target.paused

        deleted = client.post(f"/webhooks/{hook}/delete", data={"csrf": csrf_of(client)})
        assert deleted.status_code == 303
        assert backend.records.integrations.webhooks(org) == []


def test_another_organizations_webhook_is_not_found_and_untouched(backend: ApiBackend) -> None:
    org_a, _ = backend.new_org_key("a")
    _, key_b = backend.new_org_key("b")
    hook, _ = backend.records.integrations.create_webhook(org_a, "https://example.com/a", 100, {})
    with signed_in(backend.url, key_b) as b:
        assert "example.com/a" not in b.get("/webhooks").text
        assert b.get(f"/webhooks/{hook}").status_code == 404
        csrf = csrf_of(b)
        assert b.post(f"/webhooks/{hook}/delete", data={"csrf": csrf}).status_code == 404
        assert b.post(f"/webhooks/{hook}/resume", data={"csrf": csrf}).status_code == 404
    assert [w.target.id for w in backend.records.integrations.webhooks(org_a)] == [hook]


# -- creating a webhook on the page --------------------------------------------------------------

SECRET = re.compile(r'aria-label="the signing secret"')
SECRET_VALUE = re.compile(r'value="(whsec_[^"]+)"')


def create(client: httpx.Client, **fields: str) -> httpx.Response:
    """The New webhook form, posted with the page's CSRF token (no redirect followed)."""
    return client.post("/webhooks", data={"csrf": csrf_of(client), **fields})


def reveal(client: httpx.Client, created: httpx.Response) -> str:
    """The signing secret on the page the creation redirected to (its one showing)."""
    assert created.status_code == 303, created.text[:500]
    assert created.headers["cache-control"] == "no-store"
    page = client.get(created.headers["location"])
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    found = SECRET_VALUE.search(page.text)
    assert found is not None and SECRET.search(page.text), page.text[:1000]
    return found.group(1)


def test_the_secret_is_shown_once_with_the_recipe_and_never_listed(backend: ApiBackend) -> None:
    org, key = backend.new_org_key("acme")
    _, key_b = backend.new_org_key("bravo")
    with signed_in(backend.url, key) as client, signed_in(backend.url, key_b) as b:
        created = create(
            client, url="https://hooks.example.com/x", sample_rate="25", filters="Env=prod\n"
        )
        ticket_url = created.headers["location"]
        assert ticket_url.startswith("/webhooks/new/")
        # another organization's browser cannot open it, nor use it up
        stolen = b.get(ticket_url)
        assert stolen.status_code == 410 and "whsec_" not in stolen.text

        secret = reveal(client, created)
        page = client.get(ticket_url)  # a reload
        assert page.status_code == 410 and "already shown" in page.text
        assert secret not in page.text and "whsec_" not in page.text
        assert page.headers["cache-control"] == "no-store"

    (hook,) = backend.records.integrations.webhooks(org)
    assert hook.target.secret == secret and hook.target.url == "https://hooks.example.com/x"
    assert hook.rule.sample_rate == 25 and hook.rule.property_filters == {"env": "prod"}
    with signed_in(backend.url, key) as client:
        assert secret not in client.get("/webhooks").text
        assert secret not in client.get(f"/webhooks/{hook.target.id}").text


def test_the_reveal_page_shows_the_verification_recipe_that_checks_a_delivery(
    backend: ApiBackend,
) -> None:
    """The five lines on the page, run as a receiver would paste them, accept a signature
    made the way the delivery worker makes it."""
    _, key = backend.new_org_key("acme")
    with signed_in(backend.url, key) as client:
        created = create(client, url="https://hooks.example.com/x")
        page = client.get(created.headers["location"]).text
    found = SECRET_VALUE.search(page)
    recipe = re.search(r"<pre><code>(import hashlib.*?)</code></pre>", page, re.S)
    assert found is not None and recipe is not None
    code = html.unescape(recipe.group(1))
    assert len(code.splitlines()) == 5
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the page's own text
    secret, body, t = found.group(1), b'{"request_id": "r1"}', int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert namespace["verify"](secret, body, f"t={t},v1={sig}")
    assert not namespace["verify"](secret, body + b" ", f"t={t},v1={sig}")


def test_a_webhook_created_on_the_page_gets_the_matching_calls_signed(
    tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    env = gateway_env(
        mock_upstream,
        LLMTAP_OUTBOX_ALLOW_PRIVATE_TARGETS="true",
        LLMTAP_OUTBOX_POLL_S="0.1",
        LLMTAP_KEY_CACHE_TTL_S="0",  # the consumer reads the webhooks afresh for every call
    )
    with (
        GatewayProcess(tmp_path / "data", env=env) as gateway,
        Receiver() as receiver,
    ):
        gateway.wait_api()
        key = gateway.first_key()
        assert key is not None
        with signed_in(gateway.api_url, key) as client:
            secret = reveal(
                client, create(client, url=receiver.url + "/hook", filters="team = a\n\n")
            )
            listed = client.get("/webhooks").text
            assert receiver.url + "/hook" in listed and "team=a" in listed

        chat = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)

        def call(team: str) -> str:
            raw = chat.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hello"}],
                extra_headers={"Helicone-Property-Team": team},
            )
            return raw.headers["helicone-id"]

        wanted, other = call("a"), call("b")
        wait_for(lambda: receiver.accepted(), timeout_s=30, what="the delivery")
        store = open_records_store(gateway.records_url)
        try:
            wait_for(
                lambda: store.get_request(None, other) is not None,
                timeout_s=20,
                what="the other call stored",
            )
        finally:
            store.close()
        (got,) = receiver.accepted()
        assert got.headers["idempotency-key"] == wanted, "only the call whose filter matches"
        t, v1 = (part.split("=", 1)[1] for part in got.headers["llmtap-signature"].split(","))
        expected = hmac.new(secret.encode(), f"{t}.".encode() + got.body, hashlib.sha256)
        assert hmac.compare_digest(expected.hexdigest(), v1), "signed with the secret shown"


@pytest.mark.parametrize(
    "fields",
    [
        {"url": HOSTILE_URL},
        {"url": "https://example.com/x", "filters": "env=<script>alert(2)</script>"},
        {"url": "https://example.com/x", "filters": "<img src=x onerror=alert(3)>=v"},
    ],
)
def test_hostile_url_and_filters_render_as_text(
    backend: ApiBackend, fields: dict[str, str]
) -> None:
    org, key = backend.new_org_key("acme")
    with signed_in(backend.url, key) as client:
        created = create(client, **fields)
        assert created.status_code == 303, created.text[:500]
        (hook,) = backend.records.integrations.webhooks(org)
        for text in (
            client.get(created.headers["location"]).text,
            client.get("/webhooks").text,
            client.get(f"/webhooks/{hook.target.id}").text,
        ):
            assert "<script>alert" not in text and "<img src=x" not in text
            assert "&lt;script&gt;alert" in text or "&lt;img src=x" in text


@pytest.mark.parametrize(
    ("token", "headers"),
    [
        (None, {}),
        ("not-the-token", {}),
        ("right", {"origin": "https://evil.example"}),  # the right token, from another site
        ("right", {"sec-fetch-site": "cross-site"}),
    ],
)
def test_a_form_without_the_csrf_token_or_from_elsewhere_is_refused(
    backend: ApiBackend, token: str | None, headers: dict[str, str]
) -> None:
    org, key = backend.new_org_key("acme")
    backend.records.integrations.set_posthog(org, "https://eu.i.posthog.com", "phc_kept1234")
    with signed_in(backend.url, key) as client:
        sent = {} if token is None else {"csrf": csrf_of(client) if token == "right" else token}
        for path, fields in [
            ("/webhooks", {"url": "https://example.com/x"}),
            ("/integrations/posthog", {"host": "https://us.i.posthog.com", "api_key": "phc_new"}),
            ("/integrations/posthog/delete", {}),
        ]:
            answer = client.post(path, data={**fields, **sent}, headers=headers)
            assert answer.status_code == 403, (path, answer.status_code)
    assert backend.records.integrations.webhooks(org) == []
    assert backend.records.integrations.posthog(org) == PostHogProject(
        "https://eu.i.posthog.com", "phc_kept1234"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.1.2.3/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_private_loopback_or_metadata_url_is_a_form_error(backend: ApiBackend, url: str) -> None:
    org, key = backend.new_org_key("acme")
    with signed_in(backend.url, key) as client:
        answer = create(client, url=url, sample_rate="50", filters="env=prod")
        assert answer.status_code == 400
        assert 'role="alert"' in answer.text and "url:" in answer.text
        assert "deliveries may not go there" in answer.text
        # what was typed is shown again, to be corrected
        assert f'value="{html.escape(url)}"' in answer.text and "env=prod</textarea>" in answer.text
    assert backend.records.integrations.webhooks(org) == []


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"url": "ftp://example.com/x"}, "url:"),
        ({"url": "https://user:pw@example.com/x"}, "url:"),
        ({"url": "https://example.com/" + "a" * 3000}, "url:"),
        ({"url": ""}, "url:"),
        ({"url": "https://example.com/", "sample_rate": "101"}, "sample_rate"),
        ({"url": "https://example.com/", "sample_rate": "-1"}, "sample_rate"),
        ({"url": "https://example.com/", "sample_rate": "nan"}, "sample_rate"),
        ({"url": "https://example.com/", "sample_rate": "lots"}, "sample_rate"),
        ({"url": "https://example.com/", "filters": "no-equals-sign"}, "expected NAME=VALUE"),
        ({"url": "https://example.com/", "filters": "=v"}, "expected NAME=VALUE"),
        ({"url": "https://example.com/", "filters": "Env=a\nenv=b"}, "given twice"),
        (
            {"url": "https://example.com/", "filters": "\n".join(f"k{i}=v" for i in range(21))},
            "at most 20 property filters",
        ),
        (
            {"url": "https://example.com/", "filters": "k=v\n" + "x=y\n" * 80_000},
            "given twice",
        ),
        ({"url": "https://example.com/", "filters": "k=" + "v" * 300}, "at most 256"),
    ],
)
def test_malformed_forms_are_refused_with_the_apis_messages(
    backend: ApiBackend, fields: dict[str, str], said: str
) -> None:
    org, key = backend.new_org_key("acme")
    with signed_in(backend.url, key) as client:
        answer = create(client, **fields)
        assert answer.status_code == 400, answer.text[:300]
        assert said in html.unescape(answer.text)
        assert len(answer.content) < 100_000, "a pasted megabyte is not echoed back"
    assert backend.records.integrations.webhooks(org) == []


def test_over_the_per_organization_limit_is_a_form_error(tmp_path: Path) -> None:
    with ApiBackend(tmp_path / "data", analytics=False, webhooks_max_per_org=2) as backend:
        org, key = backend.new_org_key("acme")
        with signed_in(backend.url, key) as client:
            for n in range(2):
                assert create(client, url=f"https://example.com/{n}").status_code == 303
            third = create(client, url="https://example.com/third")
            assert third.status_code == 400
            assert "at most 2 webhooks" in third.text and 'role="alert"' in third.text
        assert [w.target.url for w in backend.records.integrations.webhooks(org)] == [
            "https://example.com/0",
            "https://example.com/1",
        ]


# -- PostHog ------------------------------------------------------------------------------------


def test_posthog_is_set_replaced_and_removed_with_the_key_never_shown(
    backend: ApiBackend,
) -> None:
    org, key = backend.new_org_key("acme")
    first, second = "phc_FIRSTsecretKEY0001", "phc_SECONDsecretKEY0002"
    with signed_in(backend.url, key) as client:
        assert "No PostHog project" in client.get("/webhooks").text
        saved = client.post(
            "/integrations/posthog",
            data={"csrf": csrf_of(client), "host": "eu.i.posthog.com", "api_key": f" {first} "},
        )
        assert saved.status_code == 303 and saved.headers["location"].startswith("/webhooks")
        page = client.get(saved.headers["location"]).text
        assert "https://eu.i.posthog.com" in page and "…0001" in page
        assert first not in page and "FIRSTsecret" not in page
        assert backend.records.integrations.posthog(org) == PostHogProject(
            "https://eu.i.posthog.com", first
        )

        replaced = client.post(
            "/integrations/posthog",
            data={"csrf": csrf_of(client), "host": "", "api_key": second},
        )
        assert replaced.status_code == 303
        page = client.get("/webhooks").text
        assert "https://us.i.posthog.com" in page and "…0002" in page and second not in page
        assert backend.records.integrations.posthog(org) == PostHogProject(
            "https://us.i.posthog.com", second
        )

        removed = client.post("/integrations/posthog/delete", data={"csrf": csrf_of(client)})
        assert removed.status_code == 303
        assert "No PostHog project" in client.get("/webhooks").text
        assert backend.records.integrations.posthog(org) is None
        again = client.post("/integrations/posthog/delete", data={"csrf": csrf_of(client)})
        assert again.status_code == 404


@pytest.mark.parametrize(
    ("host", "api_key", "said"),
    [
        ("http://169.254.169.254", "phc_x", "host:"),
        ("http://localhost:9", "phc_x", "host:"),
        ("10.0.0.1", "phc_x", "host:"),
        ("https://[::1]", "phc_x", "host:"),
        ("ftp://x.example", "phc_x", "host:"),
        ("https://eu.i.posthog.com/?<script>alert(1)</script>", "phc_x", "host:"),
        ("https://eu.i.posthog.com", "", "api_key:"),
        ("https://eu.i.posthog.com", "phc_ x", "api_key:"),
        ("https://eu.i.posthog.com", "k" * 201, "api_key:"),
    ],
)
def test_a_refused_posthog_project_is_a_form_error_and_keeps_the_old_one(
    backend: ApiBackend, host: str, api_key: str, said: str
) -> None:
    org, key = backend.new_org_key("acme")
    backend.records.integrations.set_posthog(org, "https://eu.i.posthog.com", "phc_kept1234")
    with signed_in(backend.url, key) as client:
        answer = client.post(
            "/integrations/posthog",
            data={"csrf": csrf_of(client), "host": host, "api_key": api_key},
        )
        assert answer.status_code == 400 and said in answer.text
        assert "<script>alert" not in answer.text
        if api_key:
            assert api_key not in answer.text, "a refused key is not shown back either"
    assert backend.records.integrations.posthog(org) == PostHogProject(
        "https://eu.i.posthog.com", "phc_kept1234"
    )


def test_another_organization_never_sees_or_removes_the_posthog_project(
    backend: ApiBackend,
) -> None:
    org_a, _ = backend.new_org_key("a")
    org_b, key_b = backend.new_org_key("b")
    backend.records.integrations.set_posthog(org_a, "https://a-posthog.example.com", "phc_aaaa9876")
    with signed_in(backend.url, key_b) as b:
        page = b.get("/webhooks").text
        assert "a-posthog" not in page and "9876" not in page and "No PostHog project" in page
        removed = b.post("/integrations/posthog/delete", data={"csrf": csrf_of(b)})
        assert removed.status_code == 404
        saved = b.post(
            "/integrations/posthog",
            data={"csrf": csrf_of(b), "host": "https://b.example.com", "api_key": "phc_bbbb"},
        )
        assert saved.status_code == 303
    assert backend.records.integrations.posthog(org_a) == PostHogProject(
        "https://a-posthog.example.com", "phc_aaaa9876"
    )
    assert backend.records.integrations.posthog(org_b) == PostHogProject(
        "https://b.example.com", "phc_bbbb"
    )


def test_a_form_with_too_many_fields_is_refused_not_a_server_error(backend: ApiBackend) -> None:
    """A form of more than 50 fields (none of ours has 10) is read as empty: 403, not a 500
    with a traceback in the log."""
    org, key = backend.new_org_key("acme")
    with signed_in(backend.url, key) as client:
        padding = {f"f{i}": "1" for i in range(60)}
        answer = client.post(
            "/webhooks", data={"csrf": csrf_of(client), "url": "https://example.com/x", **padding}
        )
        assert answer.status_code == 403
    assert backend.records.integrations.webhooks(org) == []
