"""The mock upstream, checked with the official SDKs (sync, async, streaming) and raw HTTP."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llmtap.testing.mock_upstream import MockUpstream, expected_usage

CHAT = "/v1/chat/completions"
# typed loosely: the SDKs want TypedDicts, the raw-HTTP tests want plain JSON
HELLO: Any = [{"role": "user", "content": "Say hello to the world"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
OPENAI_AUTH = {"authorization": "Bearer sk-test-key"}
ANTHROPIC_AUTH = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream
    assert upstream.internal_errors == 0


@pytest.fixture
def oai(mock: MockUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-test-key", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(mock: MockUpstream) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=mock.url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


@pytest.fixture
def http(mock: MockUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock.url, timeout=5) as client:
        yield client


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for each event of an SSE body."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append((name, "\n".join(data)))
    return events


# -- OpenAI chat completions ---------------------------------------------------------------


def test_chat_completion_is_typed_with_predictable_usage(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        extra_headers={"x-mock-cached-tokens": "4", "x-mock-reasoning-tokens": "2"},
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert "openai-processing-ms" in raw.headers
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].message.content == "Say hello to the world Say hello to"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    # 7 prompt words + 4 cached; 8 reply words + 2 reasoning
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 10, 21)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 2
    expected = expected_usage(
        CHAT,
        {"messages": [{"role": "system", "content": "Be brief."}, *HELLO]},
        {"X-Mock-Cached-Tokens": "4", "x-mock-reasoning-tokens": "2"},
    )
    assert (expected.input_tokens, expected.output_tokens, expected.total_tokens) == (11, 10, 21)


def test_max_tokens_truncates_with_finish_reason_length(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4.1", messages=HELLO, max_tokens=3)
    assert completion.model == "gpt-4.1-2025-04-14"
    assert completion.choices[0].message.content == "Say hello to"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage and completion.usage.completion_tokens == 3


def test_unknown_model_is_echoed(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="my-local-llama", messages=HELLO)
    assert completion.model == "my-local-llama"


async def test_async_stream_with_include_usage(mock: MockUpstream) -> None:
    async with openai.AsyncOpenAI(
        base_url=mock.url + "/v1", api_key="sk-test-key", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-mock-chunks": "3"},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Say hello to"
    assert [c.usage is None for c in chunks] == [True] * (len(chunks) - 1) + [False]
    assert chunks[-1].choices == []
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.prompt_tokens == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_stream_usage_wire_format(http: httpx.Client) -> None:
    body = {"model": "gpt-4o-mini", "messages": HELLO, "stream": True}
    response = http.post(
        CHAT, json={**body, "stream_options": {"include_usage": True}}, headers=OPENAI_AUTH
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    events = sse_events(response.content)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all("usage" in c for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0

    plain = http.post(CHAT, json=body, headers=OPENAI_AUTH)
    plain_chunks = [json.loads(d) for _, d in sse_events(plain.content)[:-1]]
    assert all("usage" not in c for c in plain_chunks)
    assert all(c["choices"] for c in plain_chunks)


def test_usage_in_last_content_chunk(http: httpx.Client) -> None:
    response = http.post(
        CHAT,
        json={"model": "gpt-4o-mini", "messages": HELLO, "stream": True},
        headers={**OPENAI_AUTH, "x-mock-usage-in-last-content-chunk": "1", "x-mock-chunks": "2"},
    )
    chunks = [json.loads(d) for _, d in sse_events(response.content)[:-1]]
    with_usage = [c for c in chunks if c.get("usage")]
    assert len(with_usage) == 1
    last = with_usage[0]
    assert last is chunks[-1]
    assert last["choices"][0]["delta"] == {"content": " hello"}
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["completion_tokens"] == 2


def test_no_usage_knob(oai: openai.OpenAI, http: httpx.Client) -> None:
    headers = {"x-mock-no-usage": "true"}
    completion = oai.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, extra_headers=headers
    )
    assert completion.usage is None
    response = http.post(
        CHAT,
        json={
            "model": "gpt-4o-mini",
            "messages": HELLO,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers={**OPENAI_AUTH, **headers},
    )
    assert b"usage" not in response.content


def test_tool_calls_json_and_stream(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        tools=[WEATHER_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Say", "days": 1}

    with oai.chat.completions.stream(
        model="gpt-4o-mini",
        messages=HELLO,
        tools=[WEATHER_TOOL],
        stream_options={"include_usage": True},
        extra_headers={"x-mock-chunks": "4"},
    ) as stream:
        fragments = [
            e.arguments_delta
            for e in stream
            if e.type == "tool_calls.function.arguments.delta" and e.arguments_delta
        ]
        final = stream.get_final_completion()
    assert len(fragments) == 4
    streamed = final.choices[0].message.tool_calls
    assert streamed and streamed[0].function.arguments == call.function.arguments
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage and final.usage.completion_tokens == 4

    plain = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )
    assert plain.choices[0].message.tool_calls is None
    assert plain.choices[0].finish_reason == "stop"


# -- OpenAI responses, embeddings, models -------------------------------------------------


def test_responses_json(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model="gpt-4o-mini",
        instructions="Answer shortly",
        input="what is the time",
        extra_headers={"x-mock-cached-tokens": "3", "x-mock-reasoning-tokens": "5"},
    )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "what is the time what is the time"
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (9, 13, 22)
    assert usage.input_tokens_details.cached_tokens == 3
    assert usage.output_tokens_details.reasoning_tokens == 5


async def test_responses_stream(mock: MockUpstream) -> None:
    async with openai.AsyncOpenAI(
        base_url=mock.url + "/v1", api_key="sk-test-key", max_retries=0
    ) as client:
        stream = await client.responses.create(
            model="gpt-4o-mini",
            input=[{"role": "user", "content": "one two"}],
            stream=True,
            extra_headers={"x-mock-chunks": "3"},
        )
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    first, last = events[0], events[-1]
    assert first.type == "response.created" and first.response.usage is None
    assert last.type == "response.completed"
    assert last.response.output_text == "one two one"
    assert last.response.usage and last.response.usage.output_tokens == 3


def test_responses_function_call(oai: openai.OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "name": "lookup",
        "parameters": WEATHER_TOOL["function"]["parameters"],
    }
    with oai.responses.stream(
        model="gpt-4o-mini",
        input="weather in Paris",
        tools=[tool],
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    item = final.output[0]
    assert item.type == "function_call"
    assert item.name == "lookup"
    assert json.loads(item.arguments) == {"city": "weather", "days": 1}


def test_embeddings_float_and_base64(oai: openai.OpenAI, http: httpx.Client) -> None:
    # the SDK asks for base64 and decodes it; raw floats must be the same vectors
    result = oai.embeddings.create(
        model="text-embedding-3-small", input=["red apple", "green"], dimensions=16
    )
    assert [len(d.embedding) for d in result.data] == [16, 16]
    assert result.usage.prompt_tokens == 3 and result.usage.total_tokens == 3
    floats = http.post(
        "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "red apple", "dimensions": 16},
        headers=OPENAI_AUTH,
    ).json()
    vector = floats["data"][0]["embedding"]
    assert vector == pytest.approx(result.data[0].embedding, rel=1e-6)
    assert sum(x * x for x in vector) == pytest.approx(1.0)
    encoded = http.post(
        "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "red apple", "encoding_format": "base64"},
        headers=OPENAI_AUTH,
    ).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert len(struct.unpack(f"<{len(raw) // 4}f", raw)) == 1536


def test_models(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "gpt-4o-mini" in ids
    assert oai.models.retrieve("gpt-4o-mini").owned_by == "system"
    with pytest.raises(openai.NotFoundError) as caught:
        oai.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


# -- Anthropic ------------------------------------------------------------------------------


def test_anthropic_message_with_cache_usage(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        system="You are terse",
        messages=[{"role": "user", "content": [{"type": "text", "text": "tell me a joke"}]}],
        extra_headers={"x-mock-cached-tokens": "20", "x-mock-cache-creation-tokens": "7"},
    )
    assert raw.headers["request-id"].startswith("req_")
    message = raw.parse()
    assert message.type == "message"
    assert message.model == "claude-haiku-4-5"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text == "tell me a joke tell me a joke"
    usage = message.usage
    assert usage.input_tokens == 7  # cache reads/writes are reported beside, not inside
    assert usage.cache_read_input_tokens == 20
    assert usage.cache_creation_input_tokens == 7
    assert usage.output_tokens == 8


async def test_anthropic_async_stream(mock: MockUpstream) -> None:
    async with (
        anthropic.AsyncAnthropic(base_url=mock.url, api_key="sk-ant-test", max_retries=0) as client,
        client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=2,
            messages=[{"role": "user", "content": "count to ten"}],
        ) as stream,
    ):
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "count to"
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 2 and final.usage.input_tokens == 3
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"


def test_anthropic_stream_wire_format(http: httpx.Client) -> None:
    response = http.post(
        "/v1/messages",
        json={
            "model": "claude-haiku-4-5",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "hi there"}],
        },
        headers={**ANTHROPIC_AUTH, "x-mock-chunks": "2", "x-mock-cached-tokens": "9"},
    )
    events = sse_events(response.content)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(d) for _, d in events]
    assert [d["type"] for d in data] == names
    start_usage = data[0]["message"]["usage"]
    assert start_usage["input_tokens"] == 2
    assert start_usage["cache_read_input_tokens"] == 9
    assert start_usage["output_tokens"] == 1
    assert data[3]["delta"] == {"type": "text_delta", "text": "hi"}
    assert data[6]["delta"]["stop_reason"] == "end_turn"
    assert data[6]["usage"] == {"output_tokens": 2}


def test_anthropic_tool_use_stream(claude: anthropic.Anthropic) -> None:
    tool: Any = {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    with claude.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "weather in Rome"}],
        tools=[tool],
        extra_headers={"x-mock-chunks": "3"},
    ) as stream:
        deltas = [e for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert len(deltas) == 3
    block = final.content[0]
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == {"city": "weather"}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 3


def test_anthropic_count_tokens_and_models(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "a b c"}]
    )
    assert counted.input_tokens == 3
    models = [m.id for m in claude.models.list()]
    assert "claude-haiku-4-5-20251001" in models


# -- errors, auth, knobs -------------------------------------------------------------------


def test_status_knob_raises_typed_sdk_errors(
    oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, extra_headers={"x-mock-status": "429"}
        )
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.type == "requests"
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model="gpt-4o-mini", input="x", extra_headers={"x-mock-status": "500"})
    with pytest.raises(anthropic.RateLimitError) as throttled:
        claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-status": "429"},
        )
    assert throttled.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Mock error 429 (x-mock-status)."},
    }
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-status": "529"},
        )


def test_auth_and_bad_json_in_provider_shapes(http: httpx.Client) -> None:
    unauthenticated = http.post(CHAT, json={"model": "gpt-4o-mini", "messages": HELLO})
    assert unauthenticated.status_code == 401
    assert set(unauthenticated.json()["error"]) == {"message", "type", "param", "code"}

    no_version = http.post(
        "/v1/messages",
        json={"model": "c", "max_tokens": 5, "messages": HELLO},
        headers={"x-api-key": "k"},
    )
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"
    no_key = http.post(
        "/v1/messages",
        json={"model": "c", "max_tokens": 5, "messages": HELLO},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert no_key.status_code == 401
    assert no_key.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
    }

    broken = http.post(CHAT, content=b"{not json", headers=OPENAI_AUTH)
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    broken_anthropic = http.post("/v1/messages", content=b"[1,", headers=ANTHROPIC_AUTH)
    assert broken_anthropic.status_code == 400
    assert broken_anthropic.json()["type"] == "error"

    missing = http.post(
        "/v1/messages", json={"model": "c", "messages": HELLO}, headers=ANTHROPIC_AUTH
    )
    assert missing.json()["error"]["message"] == "max_tokens: Field required"


def test_unknown_paths_are_provider_shaped_404(http: httpx.Client) -> None:
    response = http.post("/v1/nothing", json={}, headers=OPENAI_AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/nothing)"
    anthropic_404 = http.get("/v1/messages/batches/x", headers=ANTHROPIC_AUTH)
    assert anthropic_404.status_code == 404
    assert anthropic_404.json()["error"]["type"] == "not_found_error"


def test_drop_after_chunks_closes_mid_stream(oai: openai.OpenAI) -> None:
    received: list[str] = []
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        stream=True,
        extra_headers={"x-mock-drop-after-chunks": "2"},
    )
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["Say", " hello"]


def test_drop_after_bytes_truncates_json(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(
            CHAT,
            json={"model": "gpt-4o-mini", "messages": HELLO},
            headers={**OPENAI_AUTH, "x-mock-drop-after-chunks": "10"},
        )


def test_latency_and_chunk_delay(http: httpx.Client) -> None:
    started = time.perf_counter()
    http.get("/v1/models", headers={**OPENAI_AUTH, "x-mock-latency-ms": "80"})
    assert time.perf_counter() - started >= 0.075

    arrivals = []
    started = time.perf_counter()
    with http.stream(
        "POST",
        CHAT,
        json={"model": "gpt-4o-mini", "messages": HELLO, "stream": True},
        headers={**OPENAI_AUTH, "x-mock-chunk-delay-ms": "40", "x-mock-chunks": "3"},
    ) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                arrivals.append(time.perf_counter() - started)
    # libuv timers may fire up to a millisecond early: allow a little slack below the delays
    assert len(arrivals) == 3
    assert arrivals[0] >= 0.035
    assert arrivals[2] >= 0.11
    assert arrivals[2] - arrivals[0] >= 0.02  # sent as they were produced, not buffered


def test_fail_first_fails_the_first_calls_of_each_key(http: httpx.Client) -> None:
    def call(key: str, status: str = "503", **more: str) -> int:
        response = http.post(
            CHAT,
            json={"model": "gpt-4o-mini", "messages": HELLO},
            headers={
                **OPENAI_AUTH,
                "x-mock-fail-first": "2",
                "x-mock-fail-key": key,
                "x-mock-fail-status": status,
                **more,
            },
        )
        return response.status_code

    assert [call("a"), call("b"), call("a"), call("a"), call("b"), call("b")] == [
        503,
        503,
        503,
        200,
        503,
        200,
    ]
    assert call("c", "429") == 429


def test_fail_status_zero_hangs_up_and_retry_after_is_sent(http: httpx.Client) -> None:
    headers = {**OPENAI_AUTH, "x-mock-fail-first": "1", "x-mock-fail-key": os.urandom(4).hex()}
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(
            CHAT,
            json={"model": "m", "messages": HELLO},
            headers={**headers, "x-mock-fail-status": "0"},
        )
    response = http.get(
        "/v1/models", headers={**OPENAI_AUTH, "x-mock-status": "429", "x-mock-retry-after": "3"}
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert (
        http.get("/v1/models", headers={**OPENAI_AUTH, "x-mock-fail-status": "42"}).status_code
        == 400
    )


def test_bad_knob_is_a_400(http: httpx.Client) -> None:
    response = http.get("/v1/models", headers={**OPENAI_AUTH, "x-mock-chunks": "many"})
    assert response.status_code == 400
    assert "x-mock-chunks" in response.json()["error"]["message"]


def test_pipelined_requests_are_answered_in_order(mock: MockUpstream) -> None:
    slow = (
        b"GET /v1/models/gpt-4o HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"x-mock-latency-ms: 50\r\n\r\n"
    )
    fast = b"GET /v1/models/gpt-4o-mini HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n\r\n"
    last = (
        b"GET /v1/models/o3-mini HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        b"connection: close\r\n\r\n"
    )
    with socket.create_connection((mock.host, mock.port), timeout=5) as sock:
        sock.sendall(slow + fast + last)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    ids = [json.loads(part.split(b"\r\n\r\n", 1)[1])["id"] for part in _responses(received)]
    assert ids == ["gpt-4o", "gpt-4o-mini", "o3-mini"]


def _responses(raw: bytes) -> list[bytes]:
    parts = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        parts.append(head + b"\r\n\r\n" + rest[:length])
        raw = rest[length:]
    return parts


def test_requests_are_recorded_and_cleared(mock: MockUpstream, oai: openai.OpenAI) -> None:
    mock.clear()
    oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    ).close()
    (request,) = mock.requests
    assert (request.method, request.path) == ("POST", CHAT)
    assert request.headers["authorization"] == "Bearer sk-test-key"
    body: Any = request.json()
    assert body["stream_options"] == {"include_usage": True}
    mock.clear()
    assert mock.requests == []


def test_cli_entry_point_serves_and_stops_on_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "llmtap.cli", "mock-upstream", "--port", str(port)],
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline().decode()
        assert f"http://127.0.0.1:{port}" in banner
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert response.json() == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_http10_stream_is_delimited_by_close(mock: MockUpstream) -> None:
    body = json.dumps({"model": "gpt-4o-mini", "messages": HELLO, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.0\r\nauthorization: Bearer k\r\n"
        b"connection: keep-alive\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)
    )
    with socket.create_connection((mock.host, mock.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):  # the server must close: recv returns b""
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    events = sse_events(payload)
    assert events[-1] == (None, "[DONE]")
    assert len(events) == 1 + 8 + 1 + 1  # role, 8 words, finish, [DONE]
