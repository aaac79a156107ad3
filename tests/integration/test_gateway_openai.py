"""The official ``openai`` SDK through ``llmtap serve``: what the client gets and what is logged."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_upstream import MockUpstream, expected_usage
from support.gateway import GatewayProcess
from support.probes import files_containing

RowWaiter = Callable[..., RequestRow]


PROMPT: Any = [{"role": "user", "content": "tell me everything about llamas please"}]
_VOLATILE = re.compile(rb'"(id|created|created_at)":\s*("[^"]*"|\d+)')


def masked(body: bytes) -> bytes:
    """The body with the mock's per-response ids and timestamps blanked, for comparison."""
    return _VOLATILE.sub(rb'"\1":"*"', body)


@pytest.fixture
def client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-test-openai", max_retries=0)


def test_chat_reaches_the_client_as_the_provider_sent_it(
    gateway: GatewayProcess, mock_upstream: MockUpstream, client: openai.OpenAI
) -> None:
    body = {"model": "gpt-4o-mini", "messages": PROMPT}
    direct = httpx.post(
        mock_upstream.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": "Bearer sk-test-openai"},
    )
    proxied = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": "Bearer sk-test-openai"},
    )
    assert proxied.status_code == direct.status_code == 200
    assert masked(proxied.content) == masked(direct.content)
    for name, value in direct.headers.items():
        if name not in ("x-request-id", "date", "openai-processing-ms"):
            assert proxied.headers.get(name) == value, name
    assert mock_upstream.requests[-1].headers["authorization"] == "Bearer sk-test-openai"


@pytest.mark.over_tls
def test_chat_is_logged_with_usage_user_properties_and_bodies(
    client: openai.OpenAI, wait_row: RowWaiter, bodies: BodyStore
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        extra_headers={
            "Helicone-User-Id": "alice",
            "Helicone-Property-App": "e2e",
            "Llmtap-Property-Team": "core",
            "Helicone-Session-Id": "session-1",
            "Helicone-Session-Path": "/plan/step",
            "Helicone-Session-Name": "trip",
        },
    )
    completion = raw.parse()
    request_id = raw.headers["helicone-id"]
    assert raw.headers["llmtap-id"] == request_id
    expected = expected_usage("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": PROMPT})
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected.input_tokens

    row = wait_row(request_id)
    assert row.status == 200 and row.error is None
    assert row.provider == "openai" and row.endpoint == "chat.completions"
    assert row.model == "gpt-4o-mini"
    assert row.response_model == completion.model == "gpt-4o-mini-2024-07-18"
    assert row.usage_source == "provider"
    assert (row.input_tokens, row.output_tokens) == (expected.input_tokens, expected.output_tokens)
    assert row.user_id == "alice"
    assert row.properties == {"app": "e2e", "team": "core"}
    assert (row.session_id, row.session_path, row.session_name) == (
        "session-1",
        "/plan/step",
        "trip",
    )
    assert row.latency_ms > 0 and row.ttft_ms is not None and row.ttft_ms <= row.latency_ms
    assert row.cost_nano_usd is not None and row.cost_nano_usd > 0
    assert row.request_body_key is not None and row.response_body_key is not None
    assert json.loads(bodies.get(row.request_body_key))["messages"] == PROMPT
    assert bodies.get(row.response_body_key) == raw.http_response.content


@pytest.mark.over_tls
def test_streamed_chat_gets_usage_logged_without_the_client_seeing_it(
    client: openai.OpenAI, mock_upstream: MockUpstream, wait_row: RowWaiter
) -> None:
    headers = {"x-mock-chunks": "5", "x-mock-chunk-delay-ms": "20"}
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=PROMPT, stream=True, extra_headers=headers
    )
    request_id = raw.headers["helicone-id"]
    chunks = list(raw.parse())
    # llmtap asked the provider for usage ...
    sent = mock_upstream.requests[-1].json()
    assert sent["stream_options"] == {"include_usage": True}
    # ... but the client sees the stream it asked for: no usage chunk, no usage field
    assert chunks and all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert all("usage" not in c.model_dump(exclude_unset=True) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(text.split()) == 5

    row = wait_row(request_id)
    expected = expected_usage(
        "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": PROMPT}, headers
    )
    assert row.streamed
    assert (row.input_tokens, row.output_tokens) == (expected.input_tokens, expected.output_tokens)
    assert row.ttft_ms is not None and 0 < row.ttft_ms < row.latency_ms
    assert row.latency_ms >= 5 * 20  # five chunks twenty milliseconds apart, forwarded as they came


def test_streamed_chat_that_asked_for_usage_keeps_its_usage_chunk(
    client: openai.OpenAI, mock_upstream: MockUpstream, wait_row: RowWaiter
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert mock_upstream.requests[-1].json()["stream_options"] == {"include_usage": True}


def test_opting_out_of_stream_usage_is_respected(
    client: openai.OpenAI, mock_upstream: MockUpstream, wait_row: RowWaiter
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        stream=True,
        extra_headers={"Helicone-Stream-Usage": "false"},
    )
    request_id = raw.headers["helicone-id"]
    list(raw.parse())
    assert "stream_options" not in mock_upstream.requests[-1].json()
    row = wait_row(request_id)
    assert row.usage_source == "unknown" and row.input_tokens is None
    assert row.cost_nano_usd is None and row.cost_source == "unpriced"


@pytest.mark.over_tls
async def test_async_client_chat_stream_embeddings_responses_and_models(
    gateway: GatewayProcess, wait_row: RowWaiter
) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key="sk-test-openai", max_retries=0
    ) as aclient:
        chat = await aclient.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=PROMPT
        )
        stream = await aclient.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True)
        streamed = [c async for c in stream]
        emb = await aclient.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["one two three", "four five"]
        )
        resp = await aclient.responses.with_raw_response.create(
            model="gpt-4o-mini", input="write a haiku about proxies"
        )
        models = await aclient.models.list()

    assert streamed and chat.parse().choices
    assert [m.id async for m in models]

    emb_row = wait_row(emb.headers["helicone-id"])
    assert emb_row.endpoint == "embeddings"
    assert emb_row.input_tokens == emb.parse().usage.prompt_tokens

    resp_row = wait_row(resp.headers["helicone-id"])
    parsed = resp.parse()
    assert resp_row.endpoint == "responses"
    assert parsed.usage is not None
    assert (resp_row.input_tokens, resp_row.output_tokens) == (
        parsed.usage.input_tokens,
        parsed.usage.output_tokens,
    )


def test_responses_api_stream_is_logged_with_usage(
    client: openai.OpenAI, wait_row: RowWaiter
) -> None:
    raw = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="stream me a poem", stream=True
    )
    request_id = raw.headers["helicone-id"]
    events = list(raw.parse())
    completed = [e for e in events if e.type == "response.completed"]
    assert len(completed) == 1 and completed[0].response.usage is not None
    row = wait_row(request_id)
    assert row.streamed and row.endpoint == "responses"
    assert row.output_tokens == completed[0].response.usage.output_tokens


def test_request_id_header_is_kept_when_valid_and_replaced_when_not(
    client: openai.OpenAI, wait_row: RowWaiter
) -> None:
    mine = str(uuid.uuid4())
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=PROMPT, extra_headers={"Helicone-Request-Id": mine}
    )
    assert raw.headers["helicone-id"] == mine
    assert wait_row(mine).request_id == mine

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=PROMPT, extra_headers={"Helicone-Request-Id": "not-a-uuid"}
    )
    replaced = raw.headers["helicone-id"]
    assert replaced != "not-a-uuid" and uuid.UUID(replaced)
    wait_row(replaced)


def test_omitted_bodies_are_never_written(
    client: openai.OpenAI, wait_row: RowWaiter, gateway: GatewayProcess
) -> None:
    secret_prompt = f"omit-me-{uuid.uuid4()}"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": secret_prompt}],
        extra_headers={"Helicone-Omit-Request": "true", "Helicone-Omit-Response": "true"},
    )
    row = wait_row(raw.headers["helicone-id"])
    assert row.request_omitted and row.response_omitted
    assert row.request_body_key is None and row.response_body_key is None
    assert row.status == 200
    assert files_containing(gateway.data_dir, secret_prompt.encode()) == []


def test_model_override_is_what_gets_recorded(client: openai.OpenAI, wait_row: RowWaiter) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=PROMPT,
        extra_headers={"Helicone-Model-Override": "my-finetune"},
    )
    row = wait_row(raw.headers["helicone-id"])
    assert row.model == "my-finetune"
