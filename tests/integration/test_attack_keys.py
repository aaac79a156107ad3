"""Attacks with llmtap keys at the proxy: an empty or blank ``Helicone-Auth`` is a key no
organization has, so it is refused like one, and its refusal is flagged in the default
organization like one (docs/decisions/2026-12-01-unknown-keys.md)."""

from __future__ import annotations

import uuid

import openai
import pytest

from llmtap.stores.records.store import RecordsStore
from support.gateway import GatewayProcess
from support.probes import wait_for


# "Bearer" alone: what a client sends for f"Bearer {key}" with an unset key, once trimmed
@pytest.mark.parametrize("value", ["", "Bearer"], ids=["empty", "bearer-only"])
def test_an_empty_key_is_refused_and_its_refusal_is_flagged(
    gateway: GatewayProcess, records: RecordsStore, value: str
) -> None:
    user = f"empty-key-{uuid.uuid4()}"
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"Helicone-Auth": value, "Helicone-User-Id": user},
        )
    assert refused.value.response.headers["llmtap-error"] == "invalid_llmtap_key"
    request_id = refused.value.response.headers["helicone-id"]
    row = wait_for(lambda: records.get_request(None, request_id), what="the refusal's row")
    assert (row.status, row.user_id) == (401, user)
    assert row.properties.get("llmtap-auth-error") == "unknown_key"
