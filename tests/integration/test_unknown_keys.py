"""An llmtap key no organization has never yields an unlogged answered call: the proxy refuses it
(401, in the provider's error shape, before anything is forwarded), and a record that still
carries one (revoked after the proxy checked it) is logged in the default organization, flagged
``llmtap-auth-error: unknown_key`` (docs/decisions/2026-12-01-unknown-keys.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import msgspec
import openai
import pytest

from conftest import gateway_env
from llmtap.keys import hash_key
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.record import decode, encode
from llmtap.settings import Settings
from llmtap.stores.factory import open_records_store
from llmtap.stores.records.store import RecordsStore
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.probes import wait_for

PROMPT: Any = [{"role": "user", "content": "hello"}]
BOGUS = "sk-llmtap-not-a-real-key"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("keys") / "data"
    env = gateway_env(mock_upstream, LLMTAP_KEY_CACHE_TTL_S="0.2")
    with GatewayProcess(data, env=env) as gw:
        yield gw


@pytest.fixture(scope="module")
def records(gateway: GatewayProcess) -> Iterator[RecordsStore]:
    store = open_records_store(gateway.records_url)
    yield store
    store.close()


def _forwarded(mock: MockUpstream, marker: str) -> bool:
    return any(marker in r.body.decode(errors="replace") for r in mock.requests)


def test_an_unknown_key_is_refused_before_forwarding_in_the_providers_shape(
    gateway: GatewayProcess, mock_upstream: MockUpstream, records: RecordsStore
) -> None:
    marker = f"unknown-key-{uuid.uuid4()}"
    prompt = [{"role": "user", "content": marker}]
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=prompt, extra_headers={"Helicone-Auth": f"Bearer {BOGUS}"}
        )
    assert refused.value.status_code == 401
    assert refused.value.body["code"] == "invalid_llmtap_key"  # type: ignore[index]
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="sk-provider", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused_claude:
        claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=16,
            messages=prompt,  # type: ignore[arg-type]
            extra_headers={"Llmtap-Auth": BOGUS},
        )
    assert refused_claude.value.body["type"] == "error"  # type: ignore[index]
    assert not _forwarded(mock_upstream, marker)

    # the refusal itself is logged, in the default organization, flagged
    request_id = refused.value.response.headers["helicone-id"]
    row = wait_for(lambda: records.get_request(None, request_id), what="the refused call's row")
    assert row.status == 401 and row.org_id == records.default_org_id()
    assert row.properties["llmtap-auth-error"] == "unknown_key"


def test_a_revoked_key_is_refused_once_the_proxy_knows(
    gateway: GatewayProcess, mock_upstream: MockUpstream, records: RecordsStore
) -> None:
    org = records.create_org("revoked-soon")
    key_id, key = records.create_key(org, "k")
    oai = openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key="sk-provider",
        max_retries=0,
        default_headers={"Helicone-Auth": f"Bearer {key}"},
    )
    ok = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
    row = wait_for(lambda: records.get_request(None, ok.headers["helicone-id"]), what="the row")
    assert row.org_id == org
    assert records.revoke_key(key_id)

    def refused() -> bool:
        try:
            oai.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        except openai.AuthenticationError:
            return True
        return False

    wait_for(refused, timeout_s=10, what="the revoked key refused")


def test_a_record_whose_key_turned_unknown_is_logged_flagged_not_dead_lettered(
    gateway: GatewayProcess, records: RecordsStore
) -> None:
    oai = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
    wait_for(lambda: records.get_request(None, raw.headers["helicone-id"]), what="the template")
    settings = Settings(data_dir=gateway.data_dir)
    consumer = open_consumer(settings, group=f"peek-{uuid.uuid4()}", topics=[settings.topic])
    try:
        template = None
        while template is None and (batch := consumer.poll_batch(1000, 0.5)):
            for message in batch:
                record = decode(message.value)
                if record.request_id == raw.headers["helicone-id"]:
                    template = record
    finally:
        consumer.close()
    assert template is not None
    # what a call looks like when the key was revoked between the proxy's check and the consumer
    stranger = msgspec.structs.replace(
        template, request_id=str(uuid.uuid4()), org_id=None, auth_key_hash=hash_key(BOGUS)
    )
    producer = open_producer(settings)
    try:
        producer.publish_batch(settings.topic, [(stranger.request_id.encode(), encode(stranger))])
    finally:
        producer.close()
    row = wait_for(lambda: records.get_request(None, stranger.request_id), what="its row")
    assert row.org_id == records.default_org_id() and row.status == 200
    assert row.properties["llmtap-auth-error"] == "unknown_key"
    assert row.input_tokens is not None
