"""End to end: ``llmtap serve`` → the official OpenAI SDK → the call is queryable through the API
(served by serve's backend process) with the key serve printed on first start; ``llmtap keys``
manages who can read it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import openai

from support.gateway import GatewayProcess
from support.probes import wait_for

PROMPT: Any = [{"role": "user", "content": "find me through the api"}]


def llmtap(gateway: GatewayProcess, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "llmtap", "--data-dir", str(gateway.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def api(gateway: GatewayProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_a_call_through_serve_is_queryable_with_the_printed_key(gateway: GatewayProcess) -> None:
    key = gateway.first_key()
    assert key is not None, gateway.output()[-2000:]
    gateway.wait_api()
    assert f"{gateway.api_url}/v1/requests" in gateway.output()  # the banner says where

    client = openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key="sk-provider",
        max_retries=0,
        default_headers={"Helicone-Auth": f"Bearer {key}"},
    )
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        extra_headers={"Helicone-User-Id": "dora", "Helicone-Property-Feature": "e2e-api"},
    )
    request_id = raw.headers["helicone-id"]
    completion = raw.parse()

    with api(gateway, key) as reader:

        def found() -> dict[str, Any] | None:
            response = reader.get(f"/v1/requests/{request_id}", params={"bodies": "true"})
            return response.json() if response.status_code == 200 else None

        row = wait_for(found, timeout_s=30, interval_s=0.1, what="the call in the API")
        assert row["model"] == "gpt-4o-mini"
        assert row["user_id"] == "dora"
        assert row["properties"] == {"feature": "e2e-api"}
        assert row["input_tokens"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
        assert row["bodies"]["request"]["json"]["messages"] == PROMPT
        answer = row["bodies"]["response"]["json"]["choices"][0]["message"]["content"]
        assert answer == completion.choices[0].message.content

        searched = reader.post(
            "/v1/requests/search",
            json={
                "filter": {
                    "and": [
                        {"field": "properties.feature", "op": "eq", "value": "e2e-api"},
                        {"field": "body", "op": "contains", "value": "find me through the api"},
                    ]
                }
            },
        ).json()
        assert [r["request_id"] for r in searched["data"]] == [request_id]

        helicone = reader.post(
            "/v1/request/query",
            json={"filter": {"request": {"user_id": {"equals": "dora"}}}, "limit": 10},
        ).json()
        assert [r["request_id"] for r in helicone["data"]] == [request_id]

        def counted() -> dict[str, Any] | None:
            response = reader.get("/v1/metrics", params={"group_by": "user"})
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body if body["totals"]["requests"] >= 1 else None

        metrics = wait_for(counted, timeout_s=30, interval_s=0.1, what="the call in the metrics")
        assert [g["group"] for g in metrics["series"]] == ["dora"]
        assert metrics["totals"]["tokens"]["input"] == completion.usage.prompt_tokens  # type: ignore[union-attr]


def test_keys_cli_creates_keys_for_other_orgs_and_revokes_them(gateway: GatewayProcess) -> None:
    created = llmtap(gateway, "keys", "create", "--new-org", "other-team", "--name", "ci")
    other_key = next(w for w in created.split() if w.startswith("sk-llmtap-"))
    key_id = next(w for w in created.split() if w.startswith("key_"))
    gateway.wait_api()
    assert key_id in llmtap(gateway, "keys", "list")

    with api(gateway, other_key) as reader:
        # a new organization sees none of the default organization's calls
        assert reader.get("/v1/requests").json()["data"] == []
        assert reader.get("/v1/metrics").json()["totals"]["requests"] == 0

        llmtap(gateway, "keys", "revoke", key_id)
        wait_for(
            lambda: reader.get("/v1/requests").status_code == 401,
            timeout_s=15,
            interval_s=0.2,
            what="the revoked key to be refused",
        )
    assert "revoked" in llmtap(gateway, "keys", "list")
