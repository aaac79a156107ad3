"""Rate limits by header (``Helicone-RateLimit-Policy``) and by key (``llmtap keys create
--rate-limit``), through ``llmtap serve`` with the official SDKs against the mock upstream.

Every test counts against budgets of its own (a fresh user id, property value or key), so they
share one gateway and never see each other's calls.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from conftest import gateway_env
from llmtap.cli import main
from llmtap.stores.factory import open_records_store
from llmtap.stores.records.store import RecordsStore
from llmtap.testing.mock_upstream import MockUpstream, expected_usage
from support.gateway import GatewayProcess
from support.probes import wait_for

PROMPT: Any = [{"role": "user", "content": "count these four words"}]
PRICED_MODEL = "rl-priced-model"
CENTS_PER_INPUT_TOKEN = 100  # $1 a token: a call's price is a whole number of cents


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("ratelimit") / "data"
    prices = {PRICED_MODEL: {"input": CENTS_PER_INPUT_TOKEN * 10_000, "output": 0.0}}
    env = gateway_env(
        mock_upstream,
        LLMTAP_PRICE_OVERRIDES=json.dumps(prices),
        LLMTAP_KEY_CACHE_TTL_S="0.2",
    )
    with GatewayProcess(data, env=env) as gw:
        yield gw


@pytest.fixture(scope="module")
def records(gateway: GatewayProcess) -> Iterator[RecordsStore]:
    store = open_records_store(gateway.records_url)
    yield store
    store.close()


def _client(gateway: GatewayProcess, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key="sk-provider",
        max_retries=0,
        default_headers=headers,
    )


def _call(client: openai.OpenAI, model: str = "gpt-4o-mini") -> httpx.Response:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=PROMPT)
    return raw.http_response


def _limit_headers(response: httpx.Response) -> dict[str, str]:
    return {
        k.removeprefix("helicone-ratelimit-"): v
        for k, v in response.headers.items()
        if k.startswith("helicone-ratelimit-")
    }


def test_a_request_quota_lets_quota_calls_through_then_answers_429_in_openais_shape(
    gateway: GatewayProcess, records: RecordsStore
) -> None:
    user = f"u-{uuid.uuid4()}"
    client = _client(gateway, **{"Helicone-RateLimit-Policy": "3;w=60;s=user"})
    seen = []
    for _ in range(3):
        response = _call(client.with_options(default_headers={"Helicone-User-Id": user}))
        assert response.status_code == 200
        seen.append(_limit_headers(response))
    assert [h["remaining"] for h in seen] == ["2", "1", "0"]
    assert {h["limit"] for h in seen} == {"3"}
    assert {h["policy"] for h in seen} == {"3;w=60;u=request;s=user"}
    assert all(0 < int(h["reset"]) <= 60 for h in seen)

    with pytest.raises(openai.RateLimitError) as refused:
        _call(client.with_options(default_headers={"Helicone-User-Id": user}))
    assert refused.value.status_code == 429
    assert refused.value.body["code"] == "rate_limited"  # type: ignore[index]
    assert "3 requests per 60 s" in refused.value.body["message"]  # type: ignore[index]
    over = refused.value.response
    assert _limit_headers(over)["remaining"] == "0"
    assert 0 < int(over.headers["retry-after"]) <= 60

    # the refused call is a row: status 429, marked rate limited
    request_id = over.headers["helicone-id"]
    row = wait_for(lambda: records.get_request(None, request_id), what="the 429's row")
    assert row.status == 429 and row.error == "rate_limited"
    assert row.user_id == user


def test_anthropic_callers_get_their_own_error_shape(gateway: GatewayProcess) -> None:
    claude = anthropic.Anthropic(
        base_url=gateway.url,
        api_key="sk-provider",
        max_retries=0,
        default_headers={
            "Llmtap-RateLimit-Policy": "1;w=3600;s=team",
            "Helicone-Property-Team": f"t-{uuid.uuid4()}",
        },
    )
    ok = claude.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=16, messages=PROMPT
    )
    assert ok.http_response.headers["helicone-ratelimit-remaining"] == "0"
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=PROMPT)
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert (
        refused.value.response.headers["helicone-ratelimit-policy"] == "1;w=3600;u=request;s=team"
    )


def test_segments_split_the_budget_and_calls_without_the_header_share_one(
    gateway: GatewayProcess,
) -> None:
    prop = f"p{uuid.uuid4().hex[:8]}"
    policy = {"Helicone-RateLimit-Policy": f"1;w=60;s={prop}"}
    a = _client(gateway, **policy, **{f"Helicone-Property-{prop}": "a"})
    b = _client(gateway, **policy, **{f"Helicone-Property-{prop}": "b"})
    none = _client(gateway, **policy)
    for client in (a, b, none):
        assert _call(client).status_code == 200
    for client in (a, b, none):
        with pytest.raises(openai.RateLimitError):
            _call(client)


def test_the_window_is_the_policys_and_headers_name_the_unit(gateway: GatewayProcess) -> None:
    user = f"u-{uuid.uuid4()}"
    client = _client(
        gateway,
        **{"Helicone-RateLimit-Policy": "5;w=31536000;u=request;s=user", "Helicone-User-Id": user},
    )
    headers = _limit_headers(_call(client))
    assert headers["policy"] == "5;w=31536000;u=request;s=user"
    assert 31_535_000 < int(headers["reset"]) <= 31_536_000


def _cents_used(gateway: GatewayProcess) -> dict[str, int]:
    with sqlite3.connect(gateway.data_dir / "ratelimits.db") as db:
        return {k: used for k, used in db.execute("SELECT key, used FROM buckets")}


def test_a_cents_budget_is_checked_before_the_call_and_charged_its_real_cost_after(
    gateway: GatewayProcess,
) -> None:
    cost = expected_usage("/v1/chat/completions", {"model": PRICED_MODEL, "messages": PROMPT})
    call_cents = cost.input_tokens * CENTS_PER_INPUT_TOKEN
    budget = call_cents * 2 + call_cents // 2  # room for two and a half calls
    user = f"u-{uuid.uuid4()}"
    client = _client(
        gateway,
        **{
            "Helicone-RateLimit-Policy": f"{budget};w=3600;u=cents;s=user",
            "Helicone-User-Id": user,
        },
    )
    remaining = []
    for n in range(3):
        response = _call(client, PRICED_MODEL)
        assert response.status_code == 200
        remaining.append(int(_limit_headers(response)["remaining"]))
        # the charge lands once the client has its answer: wait for it before the next check
        spent = (n + 1) * call_cents * 1_000_000
        wait_for(lambda s=spent: s in _cents_used(gateway).values(), what="the call's charge")
    # before each call: the budget left; the third call overspends it, as Helicone's does
    assert remaining == [budget, budget - call_cents, budget - 2 * call_cents]
    with pytest.raises(openai.RateLimitError) as refused:
        _call(client, PRICED_MODEL)
    assert refused.value.response.headers["helicone-ratelimit-remaining"] == "0"
    assert refused.value.response.headers["helicone-ratelimit-policy"].endswith(";u=cents;s=user")


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(gateway: GatewayProcess, capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """``llmtap keys …`` on the gateway's data directory (in this process: quick)."""

    def run(*args: str) -> Ran:
        capsys.readouterr()
        code = main(["--data-dir", str(gateway.data_dir), "keys", *args])
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


def test_a_keys_policy_applies_to_every_call_made_with_it_whatever_its_headers(
    gateway: GatewayProcess, cli: Callable[..., Ran]
) -> None:
    created = cli("create", "--name", "capped", "--rate-limit", " 2; w=60 ")
    assert created.returncode == 0, created.stderr
    key = re.search(r"^\s+(sk-llmtap-\S+)\s*$", created.stdout, re.MULTILINE)
    assert key is not None and "rate limit:   2;w=60;u=request" in created.stdout
    listed = cli("list", "--json")
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["capped"]["rate_limit"] == "2;w=60;u=request"
    assert "rate-limit=2;w=60;u=request" in cli("list").stdout

    keyed = _client(gateway, **{"Helicone-Auth": f"Bearer {key.group(1)}"})
    first = _call(keyed)
    assert _limit_headers(first) == {
        "limit": "2",
        "remaining": "1",
        "policy": "2;w=60;u=request",
        "reset": _limit_headers(first)["reset"],
    }
    # a looser header policy does not lift the key's: the tighter one answers
    loose = keyed.with_options(
        default_headers={
            "Helicone-Auth": f"Bearer {key.group(1)}",
            "Helicone-RateLimit-Policy": "1000;w=60;s=user",
            "Helicone-User-Id": f"u-{uuid.uuid4()}",
        }
    )
    assert _limit_headers(_call(loose))["policy"] == "2;w=60;u=request"
    with pytest.raises(openai.RateLimitError):
        _call(loose)
    # another key of the same organization has its own budget
    other = cli("create", "--name", "free")
    other_key = re.search(r"^\s+(sk-llmtap-\S+)\s*$", other.stdout, re.MULTILINE)
    assert other_key is not None
    free = _client(gateway, **{"Helicone-Auth": f"Bearer {other_key.group(1)}"})
    response = _call(free)
    assert response.status_code == 200 and not _limit_headers(response)


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        ("", "the quota must be a whole number"),
        ("1000", "w=<seconds> is required"),
        ("1000;w=59", "the window w must be from 60 to 31536000"),
        ("0;w=60", "the quota must be from 1 to"),
        ("-5;w=60", "the quota must be a whole number"),
        ("10;w=60;u=dollars", "u must be request or cents"),
        ("10;w=60;s=a b", "s must be user or a property name"),
        ("10;w=60;w=120", "w= given twice"),
    ],
)
def test_keys_create_refuses_a_policy_it_cannot_apply_and_creates_no_key(
    cli: Callable[..., Ran], policy: str, why: str
) -> None:
    before = cli("list", "--json").stdout
    result = cli("create", f"--rate-limit={policy}")
    assert result.returncode == 2
    assert why in result.stderr and "sk-llmtap-" not in result.stdout
    assert cli("list", "--json").stdout == before


def test_a_malformed_header_policy_is_ignored_like_helicone_and_the_row_says_why(
    gateway: GatewayProcess, records: RecordsStore
) -> None:
    client = _client(gateway, **{"Helicone-RateLimit-Policy": "10"})
    response = _call(client)
    assert response.status_code == 200 and not _limit_headers(response)
    row = wait_for(
        lambda: records.get_request(None, response.headers["helicone-id"]), what="the row"
    )
    assert row.properties["llmtap-ratelimit-ignored"] == "w=<seconds> is required"


def test_a_streamed_answer_carries_the_headers_and_its_stream_is_untouched(
    gateway: GatewayProcess,
) -> None:
    user = f"u-{uuid.uuid4()}"
    client = _client(
        gateway, **{"Helicone-RateLimit-Policy": "2;w=60;s=user", "Helicone-User-Id": user}
    )
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=PROMPT, stream=True
    ) as streamed:
        assert streamed.headers["helicone-ratelimit-remaining"] == "1"
        chunks = list(streamed.parse())
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
