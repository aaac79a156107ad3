"""The invariants of docs/architecture.md, checked against a running ``llmtap serve``.

Secrets never stored (5), no open relay (8), at-least-once + exactly-once visible (3), poison never
blocks (4), upstream failures answered in the provider's shape, limits, client disconnects.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llmtap.consumer.dlq import decode_dead_letter
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.queue.port import Message
from llmtap.settings import Settings
from llmtap.stores.factory import open_records_store
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.probes import files_containing, wait_for
from support.processes import free_port

RowWaiter = Callable[..., RequestRow]
PROMPT: Any = [{"role": "user", "content": "hello"}]


def queue_settings(gateway: GatewayProcess) -> Settings:
    return Settings(data_dir=gateway.data_dir)


def read_all(settings: Settings, topic: str, group: str) -> list[Message]:
    """Every message on ``topic``, read by a fresh consumer group."""
    consumer = open_consumer(settings, group=group, topics=[topic])
    try:
        messages: list[Message] = []
        while batch := consumer.poll_batch(1000, 0.5):
            messages.extend(batch)
        return messages
    finally:
        consumer.close()


def test_provider_keys_never_reach_any_stored_byte(
    gateway: GatewayProcess, mock_upstream: MockUpstream, wait_row: RowWaiter
) -> None:
    canary = f"sk-canary-{uuid.uuid4().hex}"
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key=canary, max_retries=0)
    ids = [
        oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT).headers[
            "helicone-id"
        ],
        oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True
        ).headers["helicone-id"],
    ]
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=canary, max_retries=0)
    ids.append(
        claude.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=32, messages=PROMPT
        ).headers["helicone-id"]
    )
    for header in ("x-api-key", "api-key", "x-goog-api-key"):
        response = httpx.post(
            gateway.url + "/v1/chat/completions?key=" + canary,
            json={"model": "gpt-4o-mini", "messages": PROMPT},
            headers={"authorization": "Bearer x", header: canary},
        )
        ids.append(response.headers["helicone-id"])
    rows = [wait_row(i) for i in ids]
    # the provider did get the key; llmtap kept a fingerprint at most
    assert any(canary in v for r in mock_upstream.requests for v in r.headers.values())
    assert all(r.request_headers for r in rows)
    assert files_containing(gateway.data_dir, canary.encode()) == []


def test_unknown_and_private_targets_are_refused(
    gateway: GatewayProcess, wait_row: RowWaiter
) -> None:
    cases = {
        "https://evil.example.com": 403,
        "http://169.254.169.254/latest/meta-data": 403,
        "http://127.0.0.1:22": 403,
        "not a url": 403,
    }
    for target, status in cases.items():
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": PROMPT},
            headers={"authorization": "Bearer x", "Helicone-Target-URL": target},
        )
        assert response.status_code == status, target
        error = response.json()["error"]
        assert (
            error["code"] == "target_not_allowed"
            and "LLMTAP_ALLOWED_TARGET_HOSTS" in error["message"]
        )
        row = wait_row(response.headers["helicone-id"])
        assert row.status == status and row.error == "target_not_allowed"


def test_unreachable_provider_gets_a_provider_shaped_502_and_is_logged(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> None:
    closed = free_port()
    env = {
        "LLMTAP_OPENAI_BASE_URL": f"http://127.0.0.1:{closed}",
        "LLMTAP_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{closed}",
        "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
    }
    with GatewayProcess(tmp_path_factory.mktemp("down") / "data", env=env) as gw:
        oai = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            oai.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        assert caught.value.status_code == 502
        body = caught.value.response.json()
        assert body["error"]["code"] == "upstream_connect_error"
        claude = anthropic.Anthropic(base_url=gw.url, api_key="sk-x", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught_a:
            claude.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=PROMPT)
        assert caught_a.value.status_code == 502
        assert caught_a.value.response.json()["type"] == "error"

        store = open_records_store(gw.records_url)
        try:
            row = wait_for(
                lambda: store.get_request(None, caught.value.response.headers["helicone-id"]),
                what="the failed call's record",
            )
        finally:
            store.close()
        assert row.status == 502 and row.error == "upstream_connect_error"


def test_provider_errors_pass_through_and_are_logged(
    gateway: GatewayProcess, wait_row: RowWaiter
) -> None:
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, extra_headers={"x-mock-status": "429"}
        )
    assert caught.value.body is not None
    row = wait_row(caught.value.response.headers["helicone-id"])
    assert row.status == 429 and row.error is None


def test_oversized_request_gets_413(gateway: GatewayProcess, wait_row: RowWaiter) -> None:
    huge = "x" * (33 * 1024 * 1024)  # default limit: 32 MiB
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=json.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": huge}]}
        ),
        headers={"authorization": "Bearer x", "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    row = wait_row(response.headers["helicone-id"])
    assert row.status == 413


@pytest.mark.over_tls
def test_client_disconnect_mid_stream_cancels_upstream_and_is_logged(
    gateway: GatewayProcess, mock_upstream: MockUpstream, records: RecordsStore
) -> None:
    request_id = str(uuid.uuid4())
    body = json.dumps({"model": "gpt-4o-mini", "messages": PROMPT, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\nx-mock-chunks: 50\r\nx-mock-chunk-delay-ms: 50\r\n"
        b"helicone-request-id: " + request_id.encode() + b"\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    sock.close()
    row = wait_for(lambda: records.get_request(None, request_id), what="the cut-off call")
    assert row.error == "client_disconnected"
    assert row.latency_ms < 50 * 50  # the stream was not played to its end


def test_replaying_the_same_records_gives_one_row_each(
    gateway: GatewayProcess, records: RecordsStore, wait_row: RowWaiter
) -> None:
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    ids = [
        oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, extra_headers={"Helicone-User-Id": "replayer"}
        ).headers["helicone-id"]
        for _ in range(5)
    ]
    for request_id in ids:
        wait_row(request_id)
    before = records.count_requests(None)
    settings = queue_settings(gateway)
    messages = [m for m in read_all(settings, settings.topic, "replay-test") if m.key]
    producer = open_producer(settings)
    try:
        for _ in range(2):
            producer.publish_batch(settings.topic, [(m.key, m.value) for m in messages])
        producer.flush(5)
    finally:
        producer.close()
    # everything replayed twice has been consumed once the group's lag is back to zero
    wait_for(lambda: _consumer_caught_up(settings), what="the consumer to take the replays")
    assert records.count_requests(None) == before
    rows = records.recent_requests(None, 1000, user_id="replayer")
    assert sorted(r.request_id for r in rows) == sorted(ids)


def _consumer_caught_up(settings: Settings) -> bool:
    """The serving consumer group has committed every partition to its end (read from the
    embedded queue's tables: joining the group to ask would take over its lease)."""
    db = sqlite3.connect(settings.queue_url.removeprefix("sqlite:///"))
    try:
        (behind,) = db.execute(
            "SELECT count(*) FROM partitions p LEFT JOIN group_offsets g"
            " ON g.grp = ? AND g.topic = p.topic AND g.part = p.part"
            " WHERE p.topic = ? AND coalesce(g.next_offset, 0) < p.next_offset",
            (settings.consumer_group, settings.topic),
        ).fetchone()
    finally:
        db.close()
    return bool(behind == 0)


def test_poison_record_goes_to_the_dead_letter_topic_and_the_consumer_moves_on(
    gateway: GatewayProcess, wait_row: RowWaiter
) -> None:
    settings = queue_settings(gateway)
    poison = b'{"this is": "not a LogRecord"}'
    producer = open_producer(settings)
    try:
        producer.publish_batch(settings.topic, [(b"poison-key", poison)])
    finally:
        producer.close()
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    after = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
    wait_row(after.headers["helicone-id"])  # the consumer went past the poison

    def dead_letter() -> Any:
        for message in read_all(settings, settings.dlq_topic, f"dlq-{uuid.uuid4()}"):
            letter = decode_dead_letter(message.value)
            if letter.original == poison:
                return letter
        return None

    letter = wait_for(dead_letter, what="the dead letter")
    assert letter.stage == "decode" and letter.attempts >= 1 and letter.error
    assert letter.original_key == b"poison-key"


def test_internal_endpoints(gateway: GatewayProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port)
    conn.request("GET", "/_llmtap/metrics")
    response = conn.getresponse()
    text = response.read().decode()
    assert response.status == 200
    assert "llmtap_proxy_requests_total" in text and "llmtap_proxy_records_dropped_total 0" in text


def test_calls_are_logged_to_the_organization_of_their_key_and_unknown_keys_flagged(
    gateway: GatewayProcess, records: RecordsStore, wait_row: RowWaiter
) -> None:
    key = gateway.first_key()
    assert key is not None
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    keyed = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=PROMPT, extra_headers={"Helicone-Auth": f"Bearer {key}"}
    )
    assert wait_row(keyed.headers["helicone-id"]).org_id == records.default_org_id()

    other_org = records.create_org("other")
    _, other_key = records.create_key(other_org, "k")
    other = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=PROMPT, extra_headers={"Llmtap-Auth": f"Bearer {other_key}"}
    )
    assert wait_row(other.headers["helicone-id"]).org_id == other_org

    # an unknown key is refused at the proxy (401) and the refusal is logged, flagged, in the
    # default organization: never an answered call that appears nowhere
    with pytest.raises(openai.AuthenticationError) as refused:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=PROMPT,
            extra_headers={"Helicone-Auth": "Bearer sk-llmtap-not-a-real-key"},
        )
    row = wait_row(refused.value.response.headers["helicone-id"])
    assert (row.status, row.org_id) == (401, records.default_org_id())
    assert row.properties["llmtap-auth-error"] == "unknown_key"
