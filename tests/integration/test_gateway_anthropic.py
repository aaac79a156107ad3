"""The official ``anthropic`` SDK through ``llmtap serve`` (sync, async, streaming)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_upstream import MockUpstream, expected_usage
from support.gateway import GatewayProcess

RowWaiter = Callable[..., RequestRow]
MESSAGES: Any = [{"role": "user", "content": "write three lines about the sea"}]
MODEL = "claude-sonnet-4-6"


def expected(headers: dict[str, str] | None = None) -> tuple[int, int]:
    usage = expected_usage(
        "/v1/messages", {"model": MODEL, "max_tokens": 256, "messages": MESSAGES}, headers
    )
    return usage.input_tokens, usage.output_tokens


@pytest.fixture
def client(gateway: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="sk-ant-test", max_retries=0)


@pytest.mark.over_tls
def test_message_is_forwarded_and_logged(
    client: anthropic.Anthropic,
    mock_upstream: MockUpstream,
    wait_row: RowWaiter,
    bodies: BodyStore,
) -> None:
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=256,
        messages=MESSAGES,
        extra_headers={"Helicone-User-Id": "bob", "Helicone-Property-Feature": "poems"},
    )
    message = raw.parse()
    received = mock_upstream.requests[-1].headers
    # the provider gets the caller's key (SDK 2.x sends it as a bearer token, 0.x as x-api-key)
    assert "sk-ant-test" in (received.get("x-api-key") or received["authorization"])
    row = wait_row(raw.headers["helicone-id"])
    assert row.provider == "anthropic" and row.endpoint == "messages"
    assert row.model == MODEL and row.response_model == message.model
    assert (row.input_tokens, row.output_tokens) == expected()
    assert (message.usage.input_tokens, message.usage.output_tokens) == expected()
    assert row.finish_reason == message.stop_reason
    assert row.user_id == "bob" and row.properties == {"feature": "poems"}
    assert row.response_body_key is not None
    assert bodies.get(row.response_body_key) == raw.http_response.content


@pytest.mark.over_tls
def test_streamed_message_has_usage_from_start_and_delta_and_ttft(
    client: anthropic.Anthropic, wait_row: RowWaiter
) -> None:
    knobs = {"x-mock-chunks": "4", "x-mock-chunk-delay-ms": "25", "x-mock-cached-tokens": "12"}
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=MESSAGES, stream=True, extra_headers=knobs
    )
    events = list(raw.parse())
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds

    row = wait_row(raw.headers["helicone-id"])
    in_tokens, out_tokens = expected(knobs)
    assert row.streamed
    assert row.output_tokens == out_tokens
    assert row.cache_read_tokens == 12
    # input_tokens counts every input token, cached reads included (docs/usage-and-cost.md)
    assert row.input_tokens == in_tokens + 12
    assert row.ttft_ms is not None and 0 < row.ttft_ms < row.latency_ms
    assert row.latency_ms >= 4 * 25


async def test_async_stream_through_the_helper(
    gateway: GatewayProcess, wait_row: RowWaiter
) -> None:
    async with (
        anthropic.AsyncAnthropic(
            base_url=gateway.url, api_key="sk-ant-test", max_retries=0
        ) as aclient,
        aclient.messages.stream(
            model=MODEL,
            max_tokens=256,
            messages=MESSAGES,
            extra_headers={"Helicone-Session-Id": "async-session"},
        ) as stream,
    ):
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
        request_id = stream.response.headers["helicone-id"]
    assert text
    row = wait_row(request_id)
    assert row.session_id == "async-session"
    assert row.output_tokens == final.usage.output_tokens


def test_anthropic_errors_keep_their_shape(
    client: anthropic.Anthropic, wait_row: RowWaiter
) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(
            model=MODEL,
            max_tokens=16,
            messages=MESSAGES,
            extra_headers={"x-mock-status": "429"},
        )
    request_id = caught.value.response.headers["helicone-id"]
    row = wait_row(request_id)
    assert row.status == 429 and row.usage_source == "unknown"
