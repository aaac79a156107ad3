"""PostHog export end to end: ``llmtap serve`` sends one ``llmtap_request`` event per call, in
batches, to a local server that checks PostHog's real ``/batch/`` format (PostHog itself cannot
run here), for the project a call names by header or its organization's; the project key never
shows in what users can read of the call.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import gateway_env
from llmtap.stores.factory import open_records_store
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.probes import wait_for
from support.receiver import Received, Receiver

KEY = "phc_test_project_key_0123456789"
FAST_OUTBOX = {
    "LLMTAP_OUTBOX_ALLOW_PRIVATE_TARGETS": "true",
    "LLMTAP_OUTBOX_RETRY_BASE_S": "0.2",
    "LLMTAP_OUTBOX_RETRY_MAX_S": "1.0",
    # slow enough that calls made together leave in one batch
    "LLMTAP_OUTBOX_POLL_S": "1.0",
    "LLMTAP_KEY_CACHE_TTL_S": "0",
    "LLMTAP_POSTHOG_BATCH_SIZE": "50",
}
PROMPT: Any = [{"role": "user", "content": "hello"}]


def posthog_batch_problem(r: Received, api_key: str = KEY) -> str | None:
    """Why PostHog's capture API would refuse this request (None: it would take it)."""
    if r.path.rstrip("/") != "/batch":
        return f"path {r.path}"
    if not r.headers.get("content-type", "").startswith("application/json"):
        return "content type"
    try:
        body = json.loads(r.body)
    except ValueError:
        return "not JSON"
    if not isinstance(body, dict) or body.get("api_key") != api_key:
        return "api_key"
    batch = body.get("batch")
    if not isinstance(batch, list) or not batch:
        return "batch"
    for event in batch:
        if not isinstance(event, dict):
            return "event not an object"
        if not isinstance(event.get("event"), str) or not event["event"]:
            return "event name"
        if not isinstance(event.get("distinct_id"), str) or not event["distinct_id"]:
            return "distinct_id"
        if not isinstance(event.get("properties", {}), dict):
            return "properties"
        try:
            datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        except (KeyError, AttributeError, ValueError):
            return "timestamp"
    return None


def events(server: Receiver) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for r in server.accepted():
        body = r.json()
        assert isinstance(body, dict)
        found.extend(body["batch"])
    return found


@pytest.fixture
def gateway(tmp_path: Path, mock_upstream: MockUpstream) -> Any:
    with GatewayProcess(tmp_path / "data", env=gateway_env(mock_upstream, **FAST_OUTBOX)) as gw:
        gw.wait_api()
        yield gw


def test_calls_naming_a_project_are_exported_in_validated_batches(
    gateway: GatewayProcess,
) -> None:
    with Receiver(check=posthog_batch_problem) as posthog:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
        headers = {
            "Helicone-Posthog-Key": KEY,
            "Helicone-Posthog-Host": posthog.url,
            "Helicone-User-Id": "alice",
            "Helicone-Property-Feature": "search",
        }
        ids = []
        for _ in range(12):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=PROMPT, extra_headers=headers
            )
            ids.append(raw.headers["helicone-id"])
        plain = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT
        )

        wait_for(
            lambda: {e["properties"]["request_id"] for e in events(posthog)} >= set(ids),
            timeout_s=30,
            what="an event per call",
        )
        assert posthog.problems == []
        exported = events(posthog)
        assert len({e["uuid"] for e in exported}) == len(ids), "one event (uuid) per call"
        assert plain.headers["helicone-id"] not in {e["properties"]["request_id"] for e in exported}
        assert max(len(r.json()["batch"]) for r in posthog.accepted()) > 1, "sent in batches"  # type: ignore[index]
        event = exported[0]
        assert event["event"] == "llmtap_request" and event["distinct_id"] == "alice"
        props = event["properties"]
        assert props["model"] == "gpt-4o-mini" and props["provider"] == "openai"
        assert props["path"] == "/v1/chat/completions" and props["feature"] == "search"
        assert props["total_tokens"] > 0 and props["latency_ms"] > 0
        assert "cost_usd" in props and "ttft_ms" in props
        assert props["llmtap_url"].endswith(f"/requests/{props['request_id']}")

        # the key reaches PostHog, never what users read of the call
        store = open_records_store(gateway.records_url)
        try:
            row = wait_for(lambda: store.get_request(None, ids[0]), what="the row")
        finally:
            store.close()
        assert KEY not in json.dumps(row.request_headers) + json.dumps(row.properties)
        key = gateway.first_key()
        shown = httpx.get(
            f"{gateway.api_url}/v1/requests/{ids[0]}?bodies=true",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert shown.status_code == 200 and KEY not in shown.text


def test_the_organizations_project_gets_calls_that_name_none(gateway: GatewayProcess) -> None:
    key = gateway.first_key()
    with (
        Receiver(check=posthog_batch_problem) as posthog,
        httpx.Client(
            base_url=gateway.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as api,
    ):
        assert api.get("/v1/integrations/posthog").status_code == 404
        put = api.put("/v1/integrations/posthog", json={"api_key": KEY, "host": posthog.url})
        assert put.status_code == 200, put.text
        assert KEY not in put.text and put.json()["api_key_hint"] == "…" + KEY[-4:]
        assert KEY not in api.get("/v1/integrations/posthog").text

        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
        rid = raw.headers["helicone-id"]
        wait_for(
            lambda: rid in {e["properties"]["request_id"] for e in events(posthog)},
            timeout_s=30,
            what="the call's event",
        )
        assert posthog.problems == []
        (event,) = [e for e in events(posthog) if e["properties"]["request_id"] == rid]
        assert event["distinct_id"] == "llmtap-anonymous"
        assert event["properties"]["$process_person_profile"] is False

        assert api.delete("/v1/integrations/posthog").status_code == 204
        assert api.get("/v1/integrations/posthog").status_code == 404
