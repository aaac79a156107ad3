"""The proxy, the consumer and the API in this process (as ``llmtap serve`` runs them), over one
mock upstream: for the retry and fallback tests, which look at what the client got, what the
provider saw and what was logged."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai

from llmtap.consumer.service import ConsumerService
from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_upstream import MockUpstream, ReceivedRequest
from support.api_backend import ApiBackend
from support.probes import wait_for


def refused_port() -> int:
    """A local port nothing listens on (bound, then closed): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class AttemptsPipeline:
    proxy: ThreadedProxy
    backend: ApiBackend
    mock: MockUpstream
    org: str
    key: str

    def openai(self, **headers: str) -> openai.OpenAI:
        """The official SDK through the proxy, its own retries off (the proxy's are tested)."""
        return openai.OpenAI(
            base_url=self.proxy.url + "/v1",
            api_key="sk-test",
            max_retries=0,
            timeout=30,
            default_headers={"helicone-auth": f"Bearer {self.key}", **headers},
        )

    def anthropic(self, **headers: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.proxy.url,
            api_key="sk-ant-test",
            max_retries=0,
            timeout=30,
            default_headers={"helicone-auth": f"Bearer {self.key}", **headers},
        )

    def seen(self, tag: str) -> list[ReceivedRequest]:
        """Requests the mock received carrying ``x-test: tag``."""
        return [r for r in self.mock.requests if r.headers.get("x-test") == tag]

    def row(self, request_id: str) -> RequestRow:
        return wait_for(
            lambda: self.backend.records.get_request(self.org, request_id),
            timeout_s=20,
            what=f"the row of {request_id}",
        )

    def api_get(self, request_id: str) -> dict[str, Any]:
        """The call's detail from the API, once the consumer has stored it."""
        self.row(request_id)
        reply = httpx.get(
            f"{self.backend.url}/v1/requests/{request_id}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        data: dict[str, Any] = reply.json()
        return data


def tag() -> str:
    """A value for ``x-test`` (and ``x-mock-fail-key``) that no other test uses."""
    return uuid.uuid4().hex


@contextmanager
def attempts_pipeline(data: Path, **proxy_settings: Any) -> Iterator[AttemptsPipeline]:
    with MockUpstream() as mock, ApiBackend(data, batch_max_wait_s=0.05) as backend:
        org, key = backend.new_org_key("retries")
        consumer = ConsumerService(backend.settings, sinks=backend.sinks)
        consumer.start()
        try:
            settings = Settings(
                data_dir=data,
                proxy_port=0,
                openai_base_url=mock.url,
                anthropic_base_url=mock.url,
                **proxy_settings,
            )
            with ThreadedProxy(settings) as proxy:
                yield AttemptsPipeline(proxy, backend, mock, org, key)
        finally:
            assert consumer.stop(timeout=10)
