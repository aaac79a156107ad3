"""The wire-format corpus replayed end to end: provider bytes → ``llmtap serve`` → stored row.

For every case of ``tests/unit/corpus`` the mock upstream answers with the provider's exact
response bytes (a canned reply), the call is made through a running ``llmtap serve`` (proxy →
queue → consumer → records store) with the official ``openai`` / ``anthropic`` SDK, and the row
the gateway stored must carry the case's tokens, usage source, finish reason, response model and
cost. The unit test (``test_corpus.py``) checks the same cases at the handler level; this one
checks that nothing between the socket and the store changes a number.

How each case is reproduced:

* Provider identity: a case's provider is a named route (``/router/groq/...``) pointing at the
  mock, so the call is priced as that provider (``openai``/``anthropic`` use the configured base
  URLs). Two cases name a host the mock cannot be: Azure (``myres.openai.azure.com``) goes through
  a route named ``azure`` with the official ``AzureOpenAI`` client, and the unknown public gateway
  ``llm.acme.example`` goes through the ``openai`` route (a loopback route would be priced as
  self-hosted; both price the override ``gpt-4o-mini`` at OpenAI's rate).
* Capture conditions are made to happen: ``Helicone-Model-Override`` is sent; gzip bytes are served
  with ``content-encoding: gzip``; the truncated capture runs on a second gateway with
  ``LLMTAP_MAX_CAPTURE_BYTES`` set to the case's capture size; the upstream cut is a stream the
  mock closes without its terminator; the client cut-off is the one call made with a raw socket
  (no SDK can hang up at an exact byte): it reads the stream up to the case's last byte, the mock
  holds the stream open, and the socket is closed.
* Prices: cases are priced as of ``CASE_TIMESTAMP_MS``, the replayed calls now. The expected cost
  uses the case's published prices when genai-prices' data has the same prices at the call's start
  time, and the prices in force at that time otherwise (same formula, ``Case.expected_cost_nano``).
"""

from __future__ import annotations

import gzip
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anthropic
import httpx
import httpx2
import openai
import pytest
from genai_prices import data_snapshot
from wire_corpus import CASE_TIMESTAMP_MS, TOKEN_FIELDS, Case, load_corpus

from conftest import gateway_env, wait_row_in
from llmtap.consumer.handlers.providers import detect_provider
from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.factory import open_body_store, open_records_store
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_canned import Ending
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess

CASES = load_corpus()
OPENAI_KEY = "sk-replay-openai"
ANTHROPIC_KEY = "sk-ant-replay"
# case provider -> route used to replay it, where the provider is a host the mock cannot be
ROUTE_FOR = {"myres.openai.azure.com": "azure", "llm.acme.example": "openai"}
# replayed as another provider: the openai route instead of a public gateway (openai-compatible)
OTHER_PROVIDER = {"llm.acme.example"}
ENDPOINT_SUFFIX = {
    "chat.completions": "/chat/completions",
    "responses": "/responses",
    "embeddings": "/embeddings",
    "messages": "/v1/messages",
}
# case price name -> genai-prices price key
PRICE_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "audio_input": "input_audio_mtok",
    "audio_output": "output_audio_mtok",
}


def route_of(case: Case) -> str:
    return ROUTE_FOR.get(case.provider, case.provider)


def ending_of(case: Case) -> Ending:
    if case.record_error == "upstream_disconnected":
        return "drop"
    if case.record_error == "client_disconnected":
        return "hold"
    return "complete"


def price_overrides() -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for case in CASES:
        for model, prices in case.overrides.items():
            assert merged.setdefault(model, prices) == prices, f"conflicting overrides for {model}"
    return merged


def replay_env(mock: MockUpstream, **extra: str) -> dict[str, str]:
    named = {route_of(c) for c in CASES} - {"openai", "anthropic"}
    return gateway_env(
        mock,
        LLMTAP_ROUTES=json.dumps({name: mock.url for name in sorted(named)}),
        LLMTAP_PRICE_OVERRIDES=json.dumps(price_overrides()),
        **extra,
    )


@dataclass
class Gateway:
    process: GatewayProcess
    records: RecordsStore
    bodies: BodyStore


def running_gateway(
    tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream, name: str, **extra: str
) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp(name) / "data"
    with GatewayProcess(data, env=replay_env(mock, **extra)) as process:
        records = open_records_store(process.records_url)
        bodies = open_body_store(process.bodies_url)
        try:
            yield Gateway(process, records, bodies)
        finally:
            records.close()
            bodies.close()
    mock.clear()


@pytest.fixture(scope="module")
def replay_gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    yield from running_gateway(tmp_path_factory, mock_upstream, "replay")


@pytest.fixture(scope="module")
def truncating_gateway(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[Gateway]:
    """A gateway that captures only as many response bytes as the truncated case holds."""
    size = next(len(c.response_body) for c in CASES if c.truncated)
    yield from running_gateway(
        tmp_path_factory, mock_upstream, "truncating", LLMTAP_MAX_CAPTURE_BYTES=str(size)
    )


# -- making the call -------------------------------------------------------------------------


def sdk_base_url(gateway: GatewayProcess, case: Case) -> str:
    """Where the SDK is pointed so that the mock is asked the provider's own path."""
    route = route_of(case)
    prefix = "" if route in ("openai", "anthropic") else f"/router/{route}"
    path = urlsplit(case.target_url).path
    suffix = ENDPOINT_SUFFIX[case.endpoint]
    assert path.endswith(suffix), (path, suffix)
    return gateway.url + prefix + path.removesuffix(suffix)


def call_openai(gateway: GatewayProcess, case: Case, headers: dict[str, str]) -> None:
    request: dict[str, Any] = dict(case.request or {})
    parts = urlsplit(case.target_url)
    client: openai.OpenAI
    if route_of(case) == "azure":
        # AzureOpenAI builds /openai/deployments/<model>/chat/completions?api-version=...
        deployment = parts.path.split("/deployments/", 1)[1].split("/", 1)[0]
        request.setdefault("model", deployment)
        client = openai.AzureOpenAI(
            azure_endpoint=gateway.url + "/router/azure",
            api_version=parse_qs(parts.query)["api-version"][0],
            api_key=OPENAI_KEY,
            max_retries=0,
        )
    else:
        client = openai.OpenAI(
            base_url=sdk_base_url(gateway, case), api_key=OPENAI_KEY, max_retries=0
        )
    with client:
        create: Callable[..., Any] = {
            "chat.completions": client.chat.completions.create,
            "responses": client.responses.create,
            "embeddings": client.embeddings.create,
        }[case.endpoint]
        result = create(**request, extra_headers=headers)
        if case.streamed:
            for _ in result:
                pass


def call_anthropic(gateway: GatewayProcess, case: Case, headers: dict[str, str]) -> None:
    with anthropic.Anthropic(
        base_url=sdk_base_url(gateway, case), api_key=ANTHROPIC_KEY, max_retries=0
    ) as client:
        result: Any = client.messages.create(**(case.request or {}), extra_headers=headers)
        if case.streamed:
            for _ in result:
                pass


def dechunk(raw: bytes) -> bytes:
    """The body bytes of the complete chunks at the start of a chunked body."""
    out = []
    while True:
        size_line, found, rest = raw.partition(b"\r\n")
        if not found:
            break
        size = int(size_line, 16)
        if size == 0 or len(rest) < size + 2:
            break
        out.append(rest[:size])
        raw = rest[size + 2 :]
    return b"".join(out)


def hang_up_mid_stream(gateway: GatewayProcess, case: Case, headers: dict[str, str]) -> None:
    """Read the stream up to the case's last byte (mid-event), then close the connection."""
    body = json.dumps(case.request).encode()
    path = urlsplit(sdk_base_url(gateway, case)).path + ENDPOINT_SUFFIX[case.endpoint]
    head = [
        f"POST {path} HTTP/1.1",
        f"host: 127.0.0.1:{gateway.port}",
        f"authorization: Bearer {OPENAI_KEY}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        received = b""
        while len(dechunk(received.partition(b"\r\n\r\n")[2])) < len(case.wire_body):
            data = sock.recv(65536)
            assert data, f"the gateway closed the stream early: {received!r}"
            received += data
    response_head, _, chunked = received.partition(b"\r\n\r\n")
    assert response_head.startswith(b"HTTP/1.1 200 ")
    assert dechunk(chunked) == case.wire_body


def expected_failure(case: Case) -> tuple[type[BaseException], ...]:
    """What the SDK raises on this response (nothing for most cases)."""
    if case.status >= 400:
        return (openai.APIStatusError, anthropic.APIStatusError)
    if case.endpoint == "messages" and case.expect.get("error"):
        # an ``error`` event in the stream: the SDK raises it with the stream's status (200)
        return (anthropic.APIStatusError,)
    if case.record_error == "upstream_disconnected":
        # raised as the transport's own error (the anthropic SDK runs on httpx2)
        return (httpx.RemoteProtocolError, httpx2.RemoteProtocolError)
    return ()


def replay(gateway: Gateway, mock: MockUpstream, case: Case) -> RequestRow:
    request_id = str(uuid.uuid4())
    headers = {"Helicone-Request-Id": request_id}
    if case.model_override:
        headers["Helicone-Model-Override"] = case.model_override
    target = urlsplit(case.target_url)
    mock.enqueue_reply(
        case.status, case.response_headers, case.wire_body, path=target.path, ending=ending_of(case)
    )
    call = call_anthropic if case.endpoint == "messages" else call_openai
    if case.record_error == "client_disconnected":
        call = hang_up_mid_stream
    failure = expected_failure(case)
    if failure:
        with pytest.raises(failure) as raised:
            call(gateway.process, case, headers)
        if isinstance(raised.value, (openai.APIStatusError, anthropic.APIStatusError)):
            assert raised.value.status_code == case.status
    else:
        call(gateway.process, case, headers)
    assert mock.pending_replies == 0, "the call never reached the mock at the provider's path"
    seen = mock.requests[-1]
    assert (seen.path, seen.query) == (target.path, target.query)
    return wait_row_in(gateway.records, request_id)


# -- what the row must say -------------------------------------------------------------------


def published_prices(case: Case, at_unix_ms: float) -> dict[str, float]:
    provider = detect_provider(case.target_url, case.provider)
    model = case.model_override or case.expect["response_model"]
    _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider.price_id, None)
    prices = info.get_prices(datetime.fromtimestamp(at_unix_ms / 1000, tz=UTC))
    return {
        name: float(value)
        for name, key in PRICE_KEYS.items()
        if (value := getattr(prices, key)) is not None
    }


def expected_cost(case: Case, row: RequestRow) -> int | None:
    """The case's cost, at the prices in force when the replayed call started."""
    if case.expect["cost_source"] != "genai-prices":
        return case.expected_cost_nano()
    now = published_prices(case, row.created_unix_ms)
    if now == published_prices(case, CASE_TIMESTAMP_MS):
        return case.expected_cost_nano()
    return replace(case, prices=now).expected_cost_nano()


def expected_capture(case: Case, stored: bytes) -> bytes:
    if case.truncated:
        # the proxy keeps exactly the first max_capture_bytes of what was sent
        return case.wire_body[: len(case.response_body)]
    if case.response_headers.get("content-encoding") == "gzip":
        return gzip.decompress(case.response_body)
    return case.response_body


def check_row(gateway: Gateway, case: Case, row: RequestRow) -> None:
    got = {name: getattr(row, name) for name in ("response_model", "finish_reason", "usage_source")}
    got.update({name: getattr(row, name) for name in TOKEN_FIELDS})
    assert got == {name: case.expect[name] for name in got}
    assert (row.status, row.error, row.endpoint) == (case.status, case.record_error, case.endpoint)
    if case.provider not in OTHER_PROVIDER:
        # replayed as the same provider the case was recorded from
        replayed = detect_provider(row.target_url, row.provider)
        assert replayed == detect_provider(case.target_url, case.provider)
    assert (row.cost_source, row.cost_nano_usd) == (
        case.expect["cost_source"],
        expected_cost(case, row),
    )
    assert row.response_body_key is not None
    # the size is what the client received, even when the capture was cut
    assert row.response_size == len(case.wire_body)
    stored = gateway.bodies.get(row.response_body_key)
    assert stored == expected_capture(case, stored)


REPLAYED = [c for c in CASES if not c.truncated]
TRUNCATED = [c for c in CASES if c.truncated]


@pytest.mark.parametrize("case", REPLAYED, ids=[c.name for c in REPLAYED])
def test_case_replayed_through_the_gateway(
    case: Case, replay_gateway: Gateway, mock_upstream: MockUpstream
) -> None:
    row = replay(replay_gateway, mock_upstream, case)
    check_row(replay_gateway, case, row)


@pytest.mark.parametrize("case", TRUNCATED, ids=[c.name for c in TRUNCATED])
def test_truncated_capture_replayed(
    case: Case, truncating_gateway: Gateway, mock_upstream: MockUpstream
) -> None:
    row = replay(truncating_gateway, mock_upstream, case)
    check_row(truncating_gateway, case, row)


def test_every_case_is_replayed() -> None:
    assert {c.name for c in REPLAYED + TRUNCATED} == {c.name for c in CASES}
