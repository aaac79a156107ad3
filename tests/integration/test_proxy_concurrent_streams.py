"""Many streams at once: each client gets its own stream, byte for byte as the provider sent it.

With other calls in flight the proxy writes what one provider read brought in one send (the
client is corked for the read: docs/decisions/2026-12-02-stream-relay.md), and the usage llmtap
asked for is cut from the events on the way. Here 64 streamed calls on 16 connections at once
(a burst of events per read, and streams with a pause between events), each compared with the
same call made directly to the mock without the usage llmtap adds: nothing of one stream may
reach another, and nothing may be lost, reordered or left corked.
"""

from __future__ import annotations

import re
import ssl
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.tls import TrustedMock

_VOLATILE = re.compile(rb'"(id|created)":\s*("[^"]*"|\d+)')
AUTH = {"authorization": "Bearer sk-test-openai"}


def masked(body: bytes) -> bytes:
    return _VOLATILE.sub(rb'"\1":"*"', body)


def body_for(n: int) -> dict[str, object]:
    # each call its own prompt, so a stream that reached the wrong client would not match
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"call number {n}: " + "word " * (n % 7)}],
        "stream": True,
    }


def knobs(n: int) -> dict[str, str]:
    chunks = str(3 + n % 6)
    if n % 4 == 0:  # a pause between events: one event per provider read
        return {"x-mock-chunks": chunks, "x-mock-chunk-delay-ms": "5"}
    return {"x-mock-chunks": chunks}  # a burst: the whole answer in one or two reads


@pytest.mark.over_tls
def test_concurrent_streams_each_reach_their_own_client_whole(
    gateway: GatewayProcess, mock_upstream: MockUpstream
) -> None:
    calls = range(64)
    trust: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=mock_upstream.ca_file)
        if isinstance(mock_upstream, TrustedMock)
        else True
    )
    with httpx.Client(timeout=30, verify=trust) as direct:
        expected = {
            n: masked(
                direct.post(
                    mock_upstream.url + "/v1/chat/completions",
                    json=body_for(n),
                    headers={**AUTH, **knobs(n)},
                ).content
            )
            for n in calls
        }

    def one(client: httpx.Client, n: int) -> tuple[int, int, bytes]:
        answer = client.post(
            gateway.url + "/v1/chat/completions", json=body_for(n), headers={**AUTH, **knobs(n)}
        )
        return n, answer.status_code, answer.content

    clients = [httpx.Client(timeout=30) for _ in range(16)]
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda n: one(clients[n % 16], n), calls))
    finally:
        for client in clients:
            client.close()

    assert len(results) == 64
    for n, status, content in results:
        assert status == 200, (n, content[:300])
        assert b'"usage"' not in content  # the usage llmtap asked for never reaches the client
        assert content.rstrip().endswith(b"data: [DONE]")
        assert masked(content) == expected[n], n
