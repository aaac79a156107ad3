"""The official SDKs and ResponseParser read the same bytes and must agree on the numbers.

The mock upstream answers the SDKs; a tee under the SDK's httpx client keeps the raw response
bytes exactly as a proxy captures them, and ResponseParser reads those.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.response_parser import NOTE_RESPONSE, ResponseParser
from llmtap.queue.port import Message
from llmtap.record import BodyRef, LogRecord, Timing
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_upstream import MockUpstream


class Tee:
    """Keeps every response body's wire bytes (still content-encoded) as the client reads them.

    Built on ``httpx`` for the openai SDK and on ``httpx2`` for the anthropic SDK, which refuses
    ``httpx`` objects; both have the same transport API.
    """

    def __init__(self, http: Any) -> None:
        self.captured: list[tuple[Any, bytearray]] = []
        captured = self.captured

        class TeeStream(http.SyncByteStream):  # type: ignore[misc]
            def __init__(self, inner: Any, sink: bytearray) -> None:
                self._inner, self._sink = inner, sink

            def __iter__(self) -> Iterator[bytes]:
                for chunk in self._inner:
                    self._sink.extend(chunk)
                    yield chunk

            def close(self) -> None:
                self._inner.close()

        class Transport(http.BaseTransport):  # type: ignore[misc]
            def __init__(self) -> None:
                self._inner = http.HTTPTransport()

            def handle_request(self, request: Any) -> Any:
                response = self._inner.handle_request(request)
                sink = bytearray()
                tee = http.Response(
                    status_code=response.status_code,
                    headers=response.headers,
                    stream=TeeStream(response.stream, sink),
                    extensions=response.extensions,
                    request=request,
                )
                captured.append((tee, sink))
                return tee

            def close(self) -> None:
                self._inner.close()

        self.client = http.Client(transport=Transport())

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


@pytest.fixture
def tee() -> Iterator[Tee]:
    transport = Tee(httpx)
    yield transport
    transport.close()


def parse_last(tee: Tee, endpoint: str, provider: str = "openai") -> Context:
    response, body = tee.captured[-1]
    record = LogRecord(
        request_id="r",
        source="proxy",
        provider=provider,
        method="POST",
        target_url=str(response.request.url),
        status=response.status_code,
        timing=Timing(start_unix_ms=0.0, total_ms=1.0),
        response_headers=dict(response.headers),
        response_body=BodyRef(key="k", size=len(body)),
    )
    row = RequestRow(
        request_id="r",
        org_id="o",
        created_unix_ms=0.0,
        source="proxy",
        provider=provider,
        method="POST",
        target_url=record.target_url,
        path=response.request.url.path,
        status=response.status_code,
        endpoint=endpoint,
    )
    ctx = Context(Message("t", 0, 0, None, b"", 0), record, row, response_body=bytes(body))
    ResponseParser()(ctx)
    return ctx


def openai_client(mock: MockUpstream, tee: Tee) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-test", http_client=tee.client)


def row_usage(ctx: Context) -> tuple[Any, ...]:
    r = ctx.row
    return (
        r.input_tokens,
        r.output_tokens,
        r.total_tokens,
        r.cache_read_tokens,
        r.reasoning_tokens,
    )


MESSAGES: Any = [{"role": "user", "content": "say something about the weather today"}]
KNOBS = {"x-mock-cached-tokens": "64", "x-mock-reasoning-tokens": "5", "x-mock-chunks": "6"}


def test_chat_json(mock: MockUpstream, tee: Tee) -> None:
    sdk = openai_client(mock, tee).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=KNOBS
    )
    ctx = parse_last(tee, "chat.completions")
    u = sdk.usage
    assert u is not None and u.prompt_tokens_details and u.completion_tokens_details
    assert row_usage(ctx) == (
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        u.prompt_tokens_details.cached_tokens,
        u.completion_tokens_details.reasoning_tokens,
    )
    assert (ctx.row.response_model, ctx.row.finish_reason) == (
        sdk.model,
        sdk.choices[0].finish_reason,
    )


@pytest.mark.parametrize("usage_on_content_chunk", [False, True])
def test_chat_stream(mock: MockUpstream, tee: Tee, usage_on_content_chunk: bool) -> None:
    headers = (
        {**KNOBS, "x-mock-usage-in-last-content-chunk": "1"} if usage_on_content_chunk else KNOBS
    )
    stream = openai_client(mock, tee).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
    )
    chunks = list(stream)
    usage = next(c.usage for c in reversed(chunks) if c.usage is not None)
    reason = next(c.choices[0].finish_reason for c in reversed(chunks) if c.choices)
    ctx = parse_last(tee, "chat.completions")
    assert usage.prompt_tokens_details and usage.completion_tokens_details
    assert row_usage(ctx) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        usage.prompt_tokens_details.cached_tokens,
        usage.completion_tokens_details.reasoning_tokens,
    )
    assert (ctx.row.response_model, ctx.row.finish_reason) == (chunks[0].model, reason)
    assert ctx.notes[NOTE_RESPONSE]["complete"] is True


def test_chat_stream_dropped_by_upstream(mock: MockUpstream, tee: Tee) -> None:
    stream = (
        openai_client(mock, tee)
        .with_options(max_retries=0)
        .chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-mock-drop-after-chunks": "2"},
        )
    )
    seen: list[Any] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        seen.extend(stream)
    ctx = parse_last(tee, "chat.completions")
    assert seen, "the SDK got the first chunks"
    assert ctx.row.response_model == seen[0].model
    assert ctx.row.usage_source == "unknown" and ctx.row.input_tokens is None


def test_responses_stream(mock: MockUpstream, tee: Tee) -> None:
    events = list(
        openai_client(mock, tee).responses.create(
            model="o4-mini", input="is 17 prime", stream=True, extra_headers=KNOBS
        )
    )
    final = events[-1]
    assert final.type == "response.completed"
    u = final.response.usage
    assert u is not None
    ctx = parse_last(tee, "responses")
    assert row_usage(ctx) == (
        u.input_tokens,
        u.output_tokens,
        u.total_tokens,
        u.input_tokens_details.cached_tokens,
        u.output_tokens_details.reasoning_tokens,
    )
    assert ctx.row.response_model == final.response.model


def test_embeddings(mock: MockUpstream, tee: Tee) -> None:
    sdk = openai_client(mock, tee).embeddings.create(
        model="text-embedding-3-small", input="the food was delicious"
    )
    ctx = parse_last(tee, "embeddings")
    assert (ctx.row.input_tokens, ctx.row.total_tokens, ctx.row.output_tokens) == (
        sdk.usage.prompt_tokens,
        sdk.usage.total_tokens,
        0,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages(mock: MockUpstream, stream: bool) -> None:
    tee = Tee(httpx2)
    client = anthropic.Anthropic(base_url=mock.url, api_key="sk-ant-test", http_client=tee.client)
    headers = {"x-mock-cached-tokens": "300", "x-mock-cache-creation-tokens": "40"}
    kwargs: Any = dict(
        model="claude-sonnet-4-20250514", max_tokens=256, messages=MESSAGES, extra_headers=headers
    )
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    ctx = parse_last(tee, "messages", provider="anthropic")
    tee.close()
    u = message.usage
    cache_write = u.cache_creation_input_tokens or 0
    cache_read = u.cache_read_input_tokens or 0
    # llmtap's input includes what Anthropic's input_tokens leaves out
    assert (ctx.row.input_tokens, ctx.row.output_tokens) == (
        u.input_tokens + cache_write + cache_read,
        u.output_tokens,
    )
    assert (ctx.row.cache_read_tokens, ctx.row.cache_write_tokens) == (cache_read, cache_write)
    assert (ctx.row.response_model, ctx.row.finish_reason) == (message.model, message.stop_reason)
