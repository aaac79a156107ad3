"""Attacks on request ids that cross sources: a proxied call (no key needed for the default
organization) must not replace a call the organization logged itself through the API (async log),
and the other way round (docs/decisions/2026-12-01-request-id-collisions.md)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai

from llmtap.stores.records.store import RecordsStore
from support.gateway import GatewayProcess
from support.probes import wait_for

CLAIMED = "llmtap-claimed-request-id"


def _async_log(request_id: str, user: str) -> dict[str, Any]:
    return {
        "providerRequest": {
            "url": "https://api.openai.com/v1/chat/completions",
            "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mine"}]},
            "meta": {"Helicone-User-Id": user, "Helicone-Request-Id": request_id},
        },
        "providerResponse": {
            "json": {"object": "chat.completion", "model": "gpt-4o-mini", "choices": []},
            "status": 200,
            "headers": {},
        },
        "timing": {
            "startTime": {"seconds": 1_764_000_000, "milliseconds": 0},
            "endTime": {"seconds": 1_764_000_001, "milliseconds": 0},
        },
    }


def _row_of_user(records: RecordsStore, user: str) -> Any:
    return next((r for r in records.recent_requests(None, 500) if r.user_id == user), None)


def test_an_anonymous_proxied_call_cannot_replace_a_logged_async_row(
    gateway: GatewayProcess, records: RecordsStore
) -> None:
    key = gateway.first_key()
    assert key is not None
    gateway.wait_api()
    claimed = str(uuid.uuid4())
    with httpx.Client(base_url=gateway.api_url, timeout=30) as api:
        sent = api.post(
            "/oai/v1/log",
            json=_async_log(claimed, "owner"),
            headers={"Authorization": f"Bearer {key}"},
        )
        assert sent.status_code == 200, sent.text
    original = wait_for(lambda: records.get_request(None, claimed), what="the async log's row")
    assert original.user_id == "owner"

    # no llmtap key: logged in the default organization, the owner's
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "an impostor"}],
        extra_headers={"Helicone-Request-Id": claimed, "Helicone-User-Id": "impostor"},
    )
    impostor = wait_for(lambda: _row_of_user(records, "impostor"), what="the impostor's row")
    kept = records.get_request(None, claimed)
    assert kept is not None
    assert (kept.user_id, kept.request_body_key) == ("owner", original.request_body_key)
    assert impostor.request_id != claimed
    assert impostor.properties[CLAIMED] == claimed


def test_an_async_log_reusing_a_proxied_id_is_stored_beside_it_and_its_own_resend_replaces(
    gateway: GatewayProcess, records: RecordsStore
) -> None:
    key = gateway.first_key()
    assert key is not None
    gateway.wait_api()
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "proxied first"}],
        extra_headers={"Helicone-User-Id": "proxied-owner"},
    )
    claimed = raw.headers["helicone-id"]
    original = wait_for(lambda: records.get_request(None, claimed), what="the proxied row")
    with httpx.Client(
        base_url=gateway.api_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as api:
        for user in ("late-log", "late-log-resent"):
            assert api.post("/oai/v1/log", json=_async_log(claimed, user)).status_code == 200
    resent = wait_for(
        lambda: _row_of_user(records, "late-log-resent"), what="the re-sent async log's row"
    )
    kept = records.get_request(None, claimed)
    assert kept is not None and kept.user_id == "proxied-owner"
    assert kept.request_body_key == original.request_body_key
    assert resent.request_id != claimed and resent.properties[CLAIMED] == claimed
    # the re-send replaced the first async log (same source, same organization): one row
    assert _row_of_user(records, "late-log") is None
