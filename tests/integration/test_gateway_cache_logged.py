"""A cache hit, end to end: logged like any call, marked as a hit, costing 0 and saving what the
call would have cost; the API filters and groups by it and ``/v1/metrics`` reports hits, the hit
rate and the savings.

The proxy (``ThreadedProxy``), the consumer service and the API (``ApiBackend``: records in
SQLite and analytics in chDB, or records in Postgres and the metrics computed there,
``records://``) run in this process on one data directory, as ``llmtap serve`` runs them (as in
test_attempts_logged.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmtap.consumer.service import ConsumerService
from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.stores.row import RequestRow
from llmtap.testing.mock_upstream import MockUpstream
from support.api_backend import ApiBackend, postgres_schema
from support.dashboard import signed_in
from support.gateway_cache import CHAT, ON
from support.probes import wait_for


@dataclass
class Pipeline:
    proxy: ThreadedProxy
    backend: ApiBackend
    org: str
    key: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.proxy.url + "/v1",
            api_key="sk-provider",
            max_retries=0,
            default_headers={"Helicone-Auth": f"Bearer {self.key}", **ON},
        )

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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def records_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Empty: SQLite records and chDB analytics; else a Postgres schema (metrics records://)."""
    if request.param == "sqlite":
        yield ""
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@contextmanager
def pipeline(tmp_path: Path, provider_url: str, records_url: str = "") -> Iterator[Pipeline]:
    data = tmp_path / "data"
    with ApiBackend(data, records_url=records_url, batch_max_wait_s=0.05) as backend:
        org, key = backend.new_org_key("acme")
        consumer = ConsumerService(backend.settings, sinks=backend.sinks)
        consumer.start()
        try:
            settings = Settings(
                data_dir=data,
                records_url=records_url,
                proxy_port=0,
                openai_base_url=provider_url,
                anthropic_base_url=provider_url,
            )
            with ThreadedProxy(settings) as proxy:
                yield Pipeline(proxy, backend, org, key)
        finally:
            assert consumer.stop(timeout=10)


def _metrics(api: httpx.Client, **params: Any) -> dict[str, Any]:
    reply = api.post("/v1/metrics", json=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_a_hit_is_logged_as_a_hit_that_cost_nothing_and_saved_the_price(
    tmp_path: Path, records_url: str
) -> None:
    with MockUpstream() as mock, pipeline(tmp_path, mock.url, records_url) as gw:
        client = gw.client()
        ids = [str(uuid.uuid4()) for _ in range(4)]
        for n, request_id in enumerate(ids):
            stream = n >= 2
            headers = {"Helicone-Request-Id": request_id}
            if stream:
                chunks = client.chat.completions.create(**CHAT, stream=True, extra_headers=headers)
                assert list(chunks)
            else:
                client.chat.completions.create(**CHAT, extra_headers=headers)
            if n % 2 == 0:
                wait_for(
                    lambda n=n: gw.proxy.metrics.cache_saves == n // 2 + 1, timeout_s=5, what="save"
                )
        assert mock.request_count == 2
        miss, hit, stream_miss, stream_hit = (gw.row(i) for i in ids)

        assert (miss.cache_hit, miss.attempts, miss.cache_saved_nano_usd) == (False, 1, None)
        assert miss.cost_nano_usd is not None and miss.cost_nano_usd > 0
        assert hit.cache_hit and hit.attempts == 0
        assert (hit.cost_nano_usd, hit.cost_source) == (0, "cache_hit")
        assert hit.cache_saved_nano_usd == miss.cost_nano_usd
        assert (hit.input_tokens, hit.output_tokens) == (miss.input_tokens, miss.output_tokens)
        assert hit.response_headers["helicone-cache"] == "HIT"
        assert miss.response_headers["helicone-cache"] == "MISS"
        assert stream_hit.cache_hit and stream_hit.streamed and not stream_miss.cache_hit
        assert stream_hit.cache_saved_nano_usd == stream_miss.cost_nano_usd
        assert stream_hit.output_tokens == stream_miss.output_tokens

        with gw.api() as api:
            assert api.get(f"/v1/requests/{ids[1]}").json()["cache_hit"] is True
            found = api.post(
                "/v1/requests/search",
                json={"filter": {"field": "cache_hit", "op": "eq", "value": True}},
            ).json()["data"]
            assert sorted(r["request_id"] for r in found) == sorted([ids[1], ids[3]])
            saved = hit.cache_saved_nano_usd + (stream_hit.cache_saved_nano_usd or 0)

            def totals() -> dict[str, Any] | None:
                got: dict[str, Any] = _metrics(api)["totals"]
                return got if got["requests"] == 4 else None

            got = wait_for(totals, timeout_s=10, what="metrics of 4 calls")
            assert (got["cache_hits"], got["cache_hit_rate"]) == (2, 0.5)
            assert got["cache_saved_nano_usd"] == saved
            assert got["cost_nano_usd"] == miss.cost_nano_usd + (stream_miss.cost_nano_usd or 0)
            groups = _metrics(api, group_by="cache_hit")["series"]
            assert sorted((g["group"], g["requests"]) for g in groups) == [
                ("false", 2),
                ("true", 2),
            ]

        # the Overview shows the hits, their rate and the savings, linking to the hits
        with signed_in(gw.backend.url, gw.key) as page:
            overview = page.get("/", params={"range": "1h"}).text
            tile = overview.split("Cache hits")[1][:600]
            assert "2 <small>50.0%</small>" in tile
            assert "%22cache_hit%22" in tile and "saved $0.0000" in tile
