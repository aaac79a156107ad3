"""Hostile bodies at the real ingestion routes (uvicorn, real records store, SQLite queue): values
that look like numbers but are not, numbers past what a row can hold, URLs ``urlsplit`` refuses,
and JSON nested past the interpreter's recursion limit. Each gets a 400 naming the problem, with
no internal error text, and nothing is logged; deep JSON gets a 400 on every JSON-taking route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.queue.factory import open_consumer
from support.api_backend import ApiBackend

DEEP = 100_000
INTERNAL_WORDS = ("Traceback", "ValueError", "RecursionError", "int()", "Exceeds the limit")


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path / "data", analytics=False) as api:
        yield api


@pytest.fixture
def key(backend: ApiBackend) -> str:
    return backend.new_org_key("acme")[1]


@pytest.fixture
def client(backend: ApiBackend, key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=backend.url, timeout=30.0, headers=headers) as c:
        yield c


def nothing_queued(backend: ApiBackend) -> bool:
    consumer = open_consumer(backend.settings, group="hostile-test")
    try:
        return consumer.poll_batch(100, 0.2) == []
    finally:
        consumer.close()


def assert_400(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message
    for word in INTERNAL_WORDS:
        assert word not in message, message


def otlp(attributes: dict[str, Any]) -> dict[str, Any]:
    """An OTLP/JSON export of one LLM span with ``attributes`` (as OTLP AnyValues) added."""

    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"stringValue": v}

    attrs = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", **attributes}
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "chat gpt-4o",
        "startTimeUnixNano": "1764000000000000000",
        "endTimeUnixNano": "1764000001000000000",
        "attributes": [{"key": k, "value": value(v)} for k, v in attrs.items()],
    }
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def async_log(url: str = "https://api.openai.com/v1/chat/completions", **response: Any) -> Any:
    return {
        "providerRequest": {"url": url, "json": {"model": "gpt-4o", "messages": []}},
        "providerResponse": {"status": 200, "json": {"choices": []}, **response},
    }


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        ({"gen_ai.usage.input_tokens": "²"}, ["gen_ai.usage.input_tokens"]),
        ({"gen_ai.usage.output_tokens": "9" * 5000}, ["gen_ai.usage.output_tokens"]),
        ({"gen_ai.usage.input_tokens": 1e300}, ["gen_ai.usage.input_tokens"]),
        ({"gen_ai.prompt.².content": "hi"}, ["gen_ai.prompt."]),
        ({"gen_ai.prompt." + "9" * 5000 + ".content": "hi"}, ["gen_ai.prompt."]),
        ({"url.full": "http://[::1"}, ["url.full"]),
        ({"gen_ai.openai.api_base": "http://[::1"}, ["gen_ai.openai.api_base"]),
        ({"server.address": "[::1", "server.port": 443}, ["server.address"]),
        ({"server.address": "example.com", "server.port": 99_999}, ["server.port"]),
        ({"http.response.status_code": "9" * 30}, ["http.response.status_code"]),
        ({"gen_ai.input.messages": "[" * DEEP + "]" * DEEP}, ["gen_ai.input.messages", "deep"]),
    ],
    ids=[
        "superscript-count",
        "5000-digit-count",
        "float-count-past-int64",
        "superscript-index",
        "5000-digit-index",
        "url-full",
        "api-base",
        "server-address",
        "server-port",
        "status-code",
        "deep-json-attribute",
    ],
)
def test_a_hostile_otlp_attribute_gets_a_400(
    backend: ApiBackend, client: httpx.Client, attributes: dict[str, Any], words: list[str]
) -> None:
    response = client.post("/v1/traces", content=json.dumps(otlp(attributes)))
    assert_400(response, *words)
    assert nothing_queued(backend)


def test_a_deeply_nested_otlp_export_gets_a_400(backend: ApiBackend, client: httpx.Client) -> None:
    deep = '{"resourceSpans": ' + "[" * DEEP + "]" * DEEP + "}"
    assert_400(client.post("/v1/traces", content=deep), "deep")
    assert nothing_queued(backend)


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested-array"])
def test_a_span_with_too_many_attribute_values_gets_a_400(
    backend: ApiBackend, client: httpx.Client, nested: bool
) -> None:
    # A body made to cost CPU: 5,000 values (the OpenTelemetry SDKs keep 128 per span).
    export = otlp({} if nested else {f"a{i}": i for i in range(5000)})
    span = export["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    if nested:
        many = [{"intValue": str(i)} for i in range(5000)]
        span["attributes"].append({"key": "many", "value": {"arrayValue": {"values": many}}})
    assert_400(client.post("/v1/traces", content=json.dumps(export)), "more than 4096")
    assert nothing_queued(backend)

    # a span at the limit is taken
    at_limit = otlp({f"a{i}": i for i in range(4000)})
    assert client.post("/v1/traces", content=json.dumps(at_limit)).status_code == 200


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (async_log(url="http://[::1"), ["providerRequest.url"]),
        (async_log(textBody="[" * DEEP + "]" * DEEP), ["deep"]),
        (async_log(textBody=("[" * DEEP + "]" * DEEP + "\n") * 2), ["deep"]),
        (async_log(json={"a": 1}, status=200) | {"timing": {"timeToFirstToken": 1e300}}, ["time"]),
    ],
    ids=["bad-url", "deep-text-body", "deep-ndjson-lines", "huge-ttft"],
)
def test_a_hostile_async_log_gets_a_400(
    backend: ApiBackend, client: httpx.Client, body: Any, words: list[str]
) -> None:
    response = client.post("/oai/v1/log", content=json.dumps(body))
    assert_400(response, *words)
    assert nothing_queued(backend)


@pytest.mark.parametrize(
    "path",
    [
        "/custom/v1/log",
        "/v1/traces",
        "/v1/metrics",
        "/v1/requests/search",
        "/v1/request/query",
    ],
)
def test_deep_json_gets_a_400_on_every_json_route(client: httpx.Client, path: str) -> None:
    for deep in ("[" * DEEP + "]" * DEEP, '{"filter": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}"):
        assert_400(client.post(path, content=deep))
