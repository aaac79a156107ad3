"""Webhooks end to end: ``llmtap serve`` delivering to a receiver on 127.0.0.1 that fails, goes
away and comes back; what it gets, how it is signed, and that the logs never wait for it.

Time is compressed by the outbox settings (backoff 0.2 s doubling to 1 s instead of 10 s to an
hour); the receiver being allowed on loopback is ``LLMTAP_OUTBOX_ALLOW_PRIVATE_TARGETS``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
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
from support.receiver import Receiver

FAST_OUTBOX = {
    "LLMTAP_OUTBOX_ALLOW_PRIVATE_TARGETS": "true",
    "LLMTAP_OUTBOX_RETRY_BASE_S": "0.2",
    "LLMTAP_OUTBOX_RETRY_MAX_S": "1.0",
    "LLMTAP_OUTBOX_POLL_S": "0.1",
    "LLMTAP_OUTBOX_TIMEOUT_S": "5",
    # the consumer reads the webhooks afresh for every call (no cache to wait out)
    "LLMTAP_KEY_CACHE_TTL_S": "0",
}
PROMPT: Any = [{"role": "user", "content": "hello"}]


# The recipe of docs/integrations.md, as a receiver would paste it.
def verify(secret: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1) and abs(time.time() - int(t)) <= tolerance_s


def helicone_signature_ok(secret: str, body: bytes, header: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def api(gateway: GatewayProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def call(gateway: GatewayProcess, n: int, **headers: str) -> list[str]:
    """``n`` chat calls through the proxy; their request ids."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    ids = []
    for _ in range(n):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, extra_headers=headers
        )
        ids.append(raw.headers["helicone-id"])
    return ids


@pytest.fixture
def gateway(tmp_path: Path, mock_upstream: MockUpstream) -> Any:
    with GatewayProcess(tmp_path / "data", env=gateway_env(mock_upstream, **FAST_OUTBOX)) as gw:
        gw.wait_api()
        yield gw


def test_a_failing_then_dead_endpoint_gets_every_event_once_with_valid_signatures(
    gateway: GatewayProcess,
) -> None:
    key = gateway.first_key()
    assert key is not None
    with Receiver(fail_first=5) as receiver, api(gateway, key) as client:
        created = client.post("/v1/webhooks", json={"url": receiver.url + "/hook"})
        assert created.status_code == 201, created.text
        hook = created.json()
        secret = hook["secret"]
        assert secret.startswith("whsec_")
        listed = client.get("/v1/webhooks").json()["data"]
        assert [w["id"] for w in listed] == [hook["id"]]
        assert "secret" not in listed[0], "the secret is shown once, at creation"

        first = call(gateway, 10)
        wait_for(lambda: receiver.accepted(), timeout_s=30, what="a first accepted delivery")
        assert [r.status for r in receiver.received[:5]] == [500] * 5

        # the endpoint goes away; calls keep being logged meanwhile
        receiver.stop()
        down_at = time.monotonic()
        second = call(gateway, 10)
        store = open_records_store(gateway.records_url)
        try:
            wait_for(
                lambda: all(store.get_request(None, rid) for rid in second),
                timeout_s=20,
                what="the calls made while the endpoint is down, stored",
            )
        finally:
            store.close()
        # it stays down through several failed attempts and the backoff's cap
        wait_for(
            lambda: client.get(f"/v1/webhooks/{hook['id']}").json()["consecutive_failures"] >= 6,
            timeout_s=30,
            what="failed attempts against the dead endpoint",
        )
        state = client.get(f"/v1/webhooks/{hook['id']}").json()
        assert state["state"] == "failing" and "connection failed" in state["last_error"]
        assert state["pending_deliveries"] > 0
        assert time.monotonic() - down_at < 40
        receiver.start()

        expected = set(first + second)
        wait_for(
            lambda: {r.headers["idempotency-key"] for r in receiver.accepted()} >= expected,
            timeout_s=40,
            what="every call delivered once the endpoint is back",
        )

        by_key: dict[str, list[Any]] = {}
        for r in receiver.accepted():
            assert r.path == "/hook"
            assert verify(secret, r.body, r.headers["llmtap-signature"])
            assert helicone_signature_ok(secret, r.body, r.headers["helicone-signature"])
            payload = r.json()
            assert isinstance(payload, dict)
            assert payload["request_id"] == r.headers["idempotency-key"]
            by_key.setdefault(r.headers["idempotency-key"], []).append(payload)
        assert set(by_key) == expected, "exactly the logged calls, once each after de-duplication"
        sample = by_key[first[0]][0]
        assert sample["model"] == "gpt-4o-mini" and sample["provider"] == "openai"
        assert sample["metadata"]["totalTokens"] > 0 and sample["metadata"]["latencyMs"] > 0
        assert "hello" in sample["request_body"] and sample["response_body"]
        assert sample["llmtap"]["status"] == 200

        # the history says so too: every delivery delivered, some after several attempts (the
        # worker marks a delivery after the endpoint's answer, so the last mark may trail the
        # receiver's copy by a moment)
        def history() -> list[dict[str, Any]]:
            data: list[dict[str, Any]] = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()[
                "data"
            ]
            return data

        wait_for(
            lambda: {d["status"] for d in history()} == {"delivered"},
            timeout_s=20,
            what="every delivery marked delivered",
        )
        marked = history()
        assert {d["request_id"] for d in marked} == expected
        assert max(d["attempts"] for d in marked) >= 2
        assert client.get(f"/v1/webhooks/{hook['id']}").json()["state"] == "active"


def test_sample_rate_and_property_filters_choose_the_calls(gateway: GatewayProcess) -> None:
    key = gateway.first_key()
    assert key is not None
    with Receiver() as receiver, api(gateway, key) as client:
        ids = {}
        for name, body in {
            "prod": {"property_filters": {"Env": "prod", "team": "a"}},
            "never": {"sample_rate": 0},
            "half": {"sample_rate": 50},
        }.items():
            answer = client.post("/v1/webhooks", json={"url": f"{receiver.url}/{name}", **body})
            assert answer.status_code == 201, answer.text
            ids[name] = answer.json()["id"]

        prod = call(gateway, 3, **{"Helicone-Property-Env": "prod", "Helicone-Property-Team": "a"})
        half_only = call(gateway, 3, **{"Helicone-Property-Env": "prod"})  # team missing
        other = call(gateway, 34, **{"Helicone-Property-Env": "dev", "Helicone-Property-Team": "a"})
        every = prod + half_only + other

        def delivered(name: str) -> set[str]:
            return {
                r.headers["idempotency-key"] for r in receiver.accepted() if r.path == f"/{name}"
            }

        wait_for(lambda: delivered("prod") == set(prod), timeout_s=30, what="the filtered calls")
        store = open_records_store(gateway.records_url)
        try:
            wait_for(
                lambda: all(store.get_request(None, rid) for rid in every),
                timeout_s=20,
                what="every call stored",
            )
        finally:
            store.close()

        def half_settled() -> bool:
            history = client.get(f"/v1/webhooks/{ids['half']}/deliveries?limit=1000").json()
            return bool(history["data"]) and all(
                d["status"] == "delivered" for d in history["data"]
            )

        wait_for(half_settled, timeout_s=30, what="the sampled deliveries")
        half = delivered("half")
        assert half <= set(every)
        assert 0 < len(half) < len(every), "about half of 40 calls (never none or all)"
        never = client.get(f"/v1/webhooks/{ids['never']}/deliveries").json()["data"]
        assert never == [] and delivered("never") == set()
        assert delivered("prod") == set(prod), "only calls whose properties all match"
