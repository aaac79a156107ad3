"""Logging without the proxy, end to end: ``llmtap serve``, an application calling the mock
upstream directly with the official SDKs, and the real client libraries reporting the calls —
``helicone-helpers``' ``HeliconeManualLogger`` and ``traceloop-sdk``'s OTLP exporter. The calls
must be queryable through the API like proxied ones, with model, tokens, cost (checked against
genai-prices directly), timings, user and properties."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from genai_prices import Usage, calc_price
from helicone_helpers import HeliconeManualLogger

from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.probes import wait_for
from support.processes import free_port


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
        )

    def rows(self, run: str, expected: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The calls logged with property ``run``, once there are ``expected`` of them."""

        def probe() -> list[dict[str, Any]] | None:
            page = self.client.get("/v1/requests", params={"property": f"run:{run}"})
            page.raise_for_status()
            data: list[dict[str, Any]] = page.json()["data"]
            return data if len(data) >= expected else None

        found = wait_for(probe, timeout_s=timeout_s, what=f"{expected} logged call(s) of {run}")
        assert len(found) == expected, found
        return found

    def detail(self, request_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/requests/{request_id}", params={"bodies": "true"})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("ingest") / "data"
    port = free_port()
    env = {
        "LLMTAP_OPENAI_BASE_URL": mock_upstream.url,
        "LLMTAP_ANTHROPIC_BASE_URL": mock_upstream.url,
        "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
        "LLMTAP_API_PORT": str(port),
    }
    with GatewayProcess(data, env=env) as gateway:
        key = gateway.first_key()
        assert key is not None
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(url + "/v1/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout_s=60.0, what="the API of llmtap serve")
        client = Api(url, key)
        yield client
        client.client.close()


def nano_usd(model: str, provider: str, input_tokens: int, output_tokens: int) -> int:
    """What genai-prices itself says the call cost, in nano-dollars (llmtap's unit)."""
    price = calc_price(
        Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        model_ref=model,
        provider_id=provider,
    ).total_price
    return int((Decimal(price) * 1_000_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@pytest.fixture
def oai(mock_upstream: MockUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock_upstream.url + "/v1", api_key="sk-provider", max_retries=0)


def test_helicone_manual_logger_logs_a_call_made_directly(api: Api, oai: openai.OpenAI) -> None:
    run = str(uuid.uuid4())
    logger = HeliconeManualLogger(
        api_key=api.key,
        logging_endpoint=api.url,
        headers={"Helicone-User-Id": "alice", "Helicone-Property-Run": run},
    )
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi llamas"}]}

    def call(recorder: Any) -> Any:
        result = oai.chat.completions.create(**request)
        recorder.append_results(result.model_dump())
        return result

    started = time.time()
    result = logger.log_request(
        provider="openai",
        request=request,
        operation=call,
        additional_headers={"Helicone-Property-Team": "search"},
    )
    finished = time.time()
    (row,) = api.rows(run, 1)
    assert result.usage is not None
    assert row["source"] == "async-log"
    assert row["provider"] == "openai"
    assert (row["model"], row["response_model"]) == ("gpt-4o-mini", result.model)
    assert (row["input_tokens"], row["output_tokens"]) == (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
    )
    assert row["cost_nano_usd"] == nano_usd(
        result.model, "openai", result.usage.prompt_tokens, result.usage.completion_tokens
    )
    assert row["user_id"] == "alice"
    assert row["properties"] == {"run": run, "team": "search"}
    assert started * 1000 - 1 <= row["created_unix_ms"] <= finished * 1000
    assert 0 < row["latency_ms"] <= (finished - started) * 1000 + 1
    detail = api.detail(row["request_id"])
    assert detail["bodies"]["request"]["json"] == request
    assert detail["bodies"]["response"]["json"]["id"] == result.id
    assert api.key not in json.dumps(detail)


async def test_helicone_log_builder_logs_a_stream_with_its_time_to_first_token(
    api: Api, oai: openai.OpenAI
) -> None:
    run = str(uuid.uuid4())
    logger = HeliconeManualLogger(api_key=api.key, logging_endpoint=api.url)
    request: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "stream me llamas"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    builder = logger.log_builder(request, {"Helicone-Property-Run": run})
    usage, model = None, ""
    for chunk in oai.chat.completions.create(**request):
        builder.add_chunk(chunk.model_dump())
        usage, model = chunk.usage or usage, chunk.model
    await builder.send_log()
    (row,) = api.rows(run, 1)
    assert usage is not None
    assert row["streamed"] is True
    assert (row["input_tokens"], row["output_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    # the log builder always posts to /custom/v1/log: the model name alone picks the price
    assert row["provider"] == "custom"
    assert row["cost_nano_usd"] == nano_usd(
        model, "openai", usage.prompt_tokens, usage.completion_tokens
    )
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]


def test_traceloop_sdk_spans_become_logged_calls(
    api: Api, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    run = str(uuid.uuid4())
    script = Path(__file__).with_name("traceloop_client.py")
    done = subprocess.run(
        [sys.executable, str(script), api.url, api.key, mock_upstream.url, run],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TRACELOOP_METRICS_ENABLED": "false", "TRACELOOP_TELEMETRY": "false", "PATH": ""},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Failed to export" not in done.stderr, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # the anthropic SDK traces its own call too: both spans of that call are one logged call
    rows = {row["model"]: row for row in api.rows(run, 3)}
    cases = [
        ("gpt-4o-mini", "chat", "openai", "chat.completions"),
        ("gpt-4o", "stream", "openai", "chat.completions"),
        ("claude-3-5-haiku-20241022", "anthropic", "anthropic", "messages"),
    ]
    trace_ids = set()
    for model, name, provider, endpoint in cases:
        row, sdk = rows[model], seen[name]
        assert row["source"] == "otel"
        assert (row["provider"], row["endpoint"]) == (provider, endpoint)
        assert row["response_model"] == sdk["model"]
        assert (row["input_tokens"], row["output_tokens"]) == (sdk["input"], sdk["output"])
        assert row["cost_nano_usd"] == nano_usd(sdk["model"], provider, sdk["input"], sdk["output"])
        assert row["user_id"] == "alice"
        assert row["properties"] == {"run": run}
        assert row["latency_ms"] > 0
        assert row["span_id"] and row["parent_span_id"]
        trace_ids.add(row["trace_id"])
    assert rows["gpt-4o"]["streamed"] is True
    assert len(trace_ids) == 1  # one workflow: the calls can be put back together as a trace
    detail = api.detail(rows["gpt-4o-mini"]["request_id"])
    assert "tell me about llamas" in json.dumps(detail["bodies"]["request"])
