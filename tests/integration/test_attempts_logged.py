"""``attempts``, end to end: the real proxy counts how many times it sent a call upstream, the
record carries it, the consumer stores it, and the API returns it, filters and groups by it.

The proxy (``ThreadedProxy``), the consumer service and the API (``ApiBackend``: records in
SQLite, analytics in chDB) run in this process on one data directory, as ``llmtap serve`` runs
them. The retried call is provoked as in test_proxy_pool_attacks.py: a pooled connection the
provider closes after reading the next request, on a call that can be replayed (a GET).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from test_proxy_pool_attacks import closes_on_second_request

from llmtap.consumer.service import ConsumerService
from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_upstream import MockUpstream
from support.api_backend import ApiBackend
from support.probes import wait_for
from support.raw_upstream import RawUpstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Pipeline:
    proxy: ThreadedProxy
    backend: ApiBackend
    org: str
    key: str

    def call(self, method: str, path: str, **headers: str) -> tuple[str, httpx.Response]:
        request_id = str(uuid.uuid4())
        reply = httpx.request(
            method,
            self.proxy.url + path,
            json=CHAT if method == "POST" else None,
            headers={
                "authorization": "Bearer sk-provider",
                "helicone-auth": f"Bearer {self.key}",
                "helicone-request-id": request_id,
                **headers,
            },
            timeout=5,
        )
        return request_id, reply

    def row(self, request_id: str) -> RequestRow:
        return wait_for(
            lambda: self.backend.records.get_request(self.org, request_id),
            timeout_s=20,
            what=f"the row of {request_id}",
        )

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.backend.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10
        )


@contextmanager
def pipeline(tmp_path: Path, provider_url: str) -> Iterator[Pipeline]:
    data = tmp_path / "data"
    with ApiBackend(data, batch_max_wait_s=0.05) as backend:
        org, key = backend.new_org_key("acme")
        consumer = ConsumerService(backend.settings, sinks=backend.sinks)
        consumer.start()
        try:
            settings = Settings(
                data_dir=data,
                proxy_port=0,
                openai_base_url=provider_url,
                anthropic_base_url=provider_url,
            )
            with ThreadedProxy(settings) as proxy:
                yield Pipeline(proxy, backend, org, key)
        finally:
            assert consumer.stop(timeout=10)


def test_a_plain_call_is_one_attempt(tmp_path: Path) -> None:
    with MockUpstream() as mock, pipeline(tmp_path, mock.url) as gw:
        request_id, reply = gw.call("POST", "/v1/chat/completions")
        assert reply.status_code == 200
        assert gw.row(request_id).attempts == 1
        with gw.api() as api:
            assert api.get(f"/v1/requests/{request_id}").json()["attempts"] == 1


def _search(api: httpx.Client, flt: dict[str, Any]) -> list[str]:
    reply = api.post("/v1/requests/search", json={"filter": flt})
    assert reply.status_code == 200, reply.text
    return sorted(row["request_id"] for row in reply.json()["data"])


def _groups(api: httpx.Client) -> dict[str | None, int]:
    reply = api.get("/v1/metrics", params={"group_by": "attempts"})
    assert reply.status_code == 200, reply.text
    return {item["group"]: item["requests"] for item in reply.json()["series"]}


def test_a_replayable_call_retried_on_a_fresh_connection_is_two_attempts(
    tmp_path: Path,
) -> None:
    both = threading.Event()
    with (
        RawUpstream(closes_on_second_request(both)) as upstream,
        pipeline(tmp_path, upstream.url) as gw,
    ):
        # two calls at once: the pool ends up holding two connections, each about to go stale
        def first(caller: str) -> tuple[str, httpx.Response]:
            return gw.call("POST", "/v1/x", **{"x-caller": caller})

        with ThreadPoolExecutor(2) as executor:
            plain = list(executor.map(first, ["a", "b"]))
        assert [reply.status_code for _, reply in plain] == [200, 200]
        wait_for(
            lambda: len(gw.proxy.upstream_pool.idle_connections()) == 2, timeout_s=5, what="pool"
        )
        retried, reply = gw.call("GET", "/v1/models", **{"x-caller": "again"})
        assert reply.status_code == 200
        assert len(upstream.connections) == 3  # the retry went on a new connection

        assert gw.row(retried).attempts == 2
        assert [gw.row(request_id).attempts for request_id, _ in plain] == [1, 1]
        with gw.api() as api:
            assert api.get(f"/v1/requests/{retried}").json()["attempts"] == 2
            assert _search(api, {"field": "attempts", "op": "eq", "value": 2}) == [retried]
            assert _search(api, {"field": "attempts", "op": "lt", "value": 2}) == sorted(
                request_id for request_id, _ in plain
            )
            wait_for(lambda: _groups(api) == {"1": 2, "2": 1}, timeout_s=10, what="metrics")
