"""Hostile rate-limit policies and values: a policy the gateway cannot read is ignored like
Helicone ignores it (the call goes through unlimited, counted), never a crash or a stuck call;
huge segment values cost one fixed-size bucket; one organization's budget can never be spent by
another's calls."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.stores.records.store import RecordsStore
from llmtap.testing.mock_upstream import MockUpstream

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream) -> Settings:
    data = tmp_path_factory.mktemp("rl-hostile") / "data"
    return Settings(
        data_dir=data, proxy_port=0, openai_base_url=mock.url, anthropic_base_url=mock.url
    )


@pytest.fixture(scope="module")
def proxy(settings: Settings) -> Iterator[ThreadedProxy]:
    RecordsStore(settings.records_url).close()  # the schema, as the consumer makes it at start
    with ThreadedProxy(settings) as running:
        yield running


def _call(proxy: ThreadedProxy, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        proxy.url + "/v1/chat/completions",
        json=BODY,
        headers={
            "Authorization": b"Bearer sk-provider",
            **{k: v.encode("latin-1") for k, v in headers.items()},
        },
        timeout=10.0,
    )


@pytest.mark.parametrize(
    "policy",
    [
        "99999999999999999999;w=60",
        "1000000001;w=60",
        "-1;w=60",
        "1;w=-60",
        "1;w=31536001",
        "1.5;w=60",
        "1e3;w=60",
        "garbage",
        ";;;",
        "1;w=60;u=cents;u=request",
        "1;w=60;x=1",
        "1;w=60;s=" + "a" * 65,
        "1;w=60;s=\xfc",
        "1;w=60" + ";s=user" * 500,
        "1;w=60;s=" + "a" * 10_000,
    ],
)
def test_a_policy_the_gateway_cannot_read_is_ignored_and_counted(
    proxy: ThreadedProxy, policy: str
) -> None:
    before = proxy.metrics.ratelimit_ignored
    for _ in range(3):  # a quota of 1 would have refused the second call
        response = _call(proxy, {"Helicone-RateLimit-Policy": policy})
        assert response.status_code == 200
        assert "helicone-ratelimit-limit" not in response.headers
    assert proxy.metrics.ratelimit_ignored == before + 3
    assert proxy.metrics.internal_errors == 0


def test_a_10_kb_user_id_is_one_fixed_size_bucket_and_never_echoed(proxy: ThreadedProxy) -> None:
    user = "u" * 10_000 + str(uuid.uuid4())
    headers = {"Helicone-RateLimit-Policy": "1;w=60;s=user", "Helicone-User-Id": user}
    first = _call(proxy, headers)
    assert first.status_code == 200 and first.headers["helicone-ratelimit-remaining"] == "0"
    second = _call(proxy, headers)
    assert second.status_code == 429
    assert user[:100] not in second.text and all(
        user[:100] not in v for v in second.headers.values()
    )
    # one character less is another user: another budget
    assert _call(proxy, {**headers, "Helicone-User-Id": user[1:]}).status_code == 200


def test_one_organizations_header_budget_is_not_anothers(
    proxy: ThreadedProxy, settings: Settings
) -> None:
    records = RecordsStore(settings.records_url)
    try:
        _, key_a = records.create_key(records.create_org("a"), "a")
        _, key_b = records.create_key(records.create_org("b"), "b")
    finally:
        records.close()
    policy = {"Helicone-RateLimit-Policy": "1;w=60;s=user", "Helicone-User-Id": "same-user"}
    assert _call(proxy, {**policy, "Helicone-Auth": f"Bearer {key_a}"}).status_code == 200
    assert _call(proxy, {**policy, "Helicone-Auth": f"Bearer {key_a}"}).status_code == 429
    # the same policy and user id under another organization: its own budget
    assert _call(proxy, {**policy, "Helicone-Auth": f"Bearer {key_b}"}).status_code == 200
    # and the default organization's (no key) is a third
    assert _call(proxy, policy).status_code == 200


def test_with_the_key_check_off_an_unknown_key_cannot_escape_a_header_policy(
    settings: Settings,
) -> None:
    RecordsStore(settings.records_url).close()
    off = settings.model_copy(update={"auth_gate": False})
    user = str(uuid.uuid4())
    policy = {"Helicone-RateLimit-Policy": "1;w=60;s=user", "Helicone-User-Id": user}
    with ThreadedProxy(off) as proxy:
        assert (
            _call(proxy, {**policy, "Helicone-Auth": "Bearer sk-llmtap-made-up"}).status_code == 200
        )
        # logged in the default organization: its budget is the one spent
        assert _call(proxy, policy).status_code == 429
