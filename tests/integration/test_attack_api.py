"""Attacks on the query API's request guard, against a real ``ApiBackend``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.api_backend import ApiBackend


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiBackend]:
    with ApiBackend(tmp_path_factory.mktemp("attack-api"), analytics=False) as api:
        yield api


def _async_log(content: str) -> dict[str, Any]:
    return {
        "providerRequest": {
            "url": "https://api.openai.com/v1/chat/completions",
            "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]},
            "meta": {},
        },
        "providerResponse": {"json": {"choices": []}, "status": 200, "headers": {}},
        "timing": {
            "startTime": {"seconds": 1_764_000_000, "milliseconds": 0},
            "endTime": {"seconds": 1_764_000_001, "milliseconds": 0},
        },
    }


def test_ingestion_bodies_get_the_ingest_limit_not_the_query_limit(backend: ApiBackend) -> None:
    """The guard caps each route's body; ingestion routes get ``max_ingest_body_bytes`` (32 MiB),
    so a 2 MiB async log (a long conversation) is accepted while a 2 MiB search is refused."""
    _, key = backend.new_org_key("big-logs")
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    settings = backend.settings
    size = settings.max_query_body_bytes * 2
    assert size < settings.max_ingest_body_bytes
    log = json.dumps(_async_log("x" * size)).encode()
    with httpx.Client(base_url=backend.url, timeout=30) as client:
        accepted = client.post("/oai/v1/log", content=log, headers=auth)
        assert accepted.status_code == 200, accepted.text
        search = json.dumps({"filter": None, "cursor": "x" * size}).encode()
        refused = client.post("/v1/requests/search", content=search, headers=auth)
        assert refused.status_code == 413
