"""Scores and feedback against a running ``llmtap serve`` (proxy, queue, consumer, API in their
own processes), where the order matters: a score posted before its call exists is kept and
joined when the call lands — proxied or sent as an async log — and a score posted after, or
twice, ends with the last value everywhere (request detail, search, metrics)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import gateway_env
from llmtap.stores.factory import open_records_store
from llmtap.stores.records.store import RecordsStore
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.probes import wait_for

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "rate me"}]}


@pytest.fixture(scope="module")
def serve(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("scores-serve") / "data"
    env = gateway_env(mock_upstream, LLMTAP_SCORES_SYNC_INTERVAL_S="0.1")
    with GatewayProcess(data, env=env) as gw:
        gw.wait_api()
        yield gw


@pytest.fixture(scope="module")
def key(serve: GatewayProcess) -> str:
    found = serve.first_key()
    assert found is not None, serve.output()[-2000:]
    return found


@pytest.fixture(scope="module")
def api(serve: GatewayProcess, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=serve.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def records(serve: GatewayProcess) -> Iterator[RecordsStore]:
    store = open_records_store(serve.records_url)
    yield store
    store.close()


def call(serve: GatewayProcess, key: str, request_id: str, **headers: str) -> None:
    response = httpx.post(
        f"{serve.url}/v1/chat/completions",
        json=CHAT,
        headers={
            "Authorization": "Bearer sk-provider",
            "Helicone-Auth": f"Bearer {key}",
            "Helicone-Request-Id": request_id,
            **headers,
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["helicone-id"] == request_id


def logged(api: httpx.Client, request_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        response = api.get(f"/v1/requests/{request_id}")
        return response.json() if response.status_code == 200 else None

    row: dict[str, Any] = wait_for(found, timeout_s=30, interval_s=0.05, what="the call")
    return row


def metrics_of(api: httpx.Client, request_id: str, **body: Any) -> dict[str, Any]:
    response = api.post(
        "/v1/metrics",
        json={"filter": {"field": "request_id", "op": "eq", "value": request_id}, **body},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_scores_posted_before_the_call_join_it_when_it_lands(
    serve: GatewayProcess, key: str, api: httpx.Client, records: RecordsStore
) -> None:
    request_id = str(uuid.uuid4())
    org = records.default_org_id()
    assert api.post(f"/v1/request/{request_id}/feedback", json={"rating": True}).json() == {
        "data": None,
        "error": None,
        "pending": True,
    }
    early = api.post(f"/v1/request/{request_id}/score", json={"scores": {"accuracy": 0.75}})
    assert early.json()["pending"] is True
    assert api.get(f"/v1/requests/{request_id}").status_code == 404
    waiting = records.scores.pending_count(org)
    assert waiting >= 2

    call(
        serve, key, request_id, **{"Helicone-Prompt-Id": "greeting", "Helicone-Prompt-Version": "3"}
    )

    row = logged(api, request_id)
    assert row["feedback"] is True
    assert row["scores"] == {"accuracy": 0.75, "helicone-score-feedback": True}
    assert (row["prompt_id"], row["prompt_version"]) == ("greeting", "3")
    # the consumer's batch clears the pending mark of the scores it joined, right after its
    # commit: the row can be read a moment before (seen in CI)
    wait_for(
        lambda: records.scores.pending_count(org) == waiting - 2,
        timeout_s=30,
        interval_s=0.05,
        what="the joined scores no longer pending",
    )

    found = api.post(
        "/v1/requests/search",
        json={
            "filter": {
                "and": [
                    {"field": "feedback", "op": "eq", "value": True},
                    {"field": "score.accuracy", "op": "gte", "value": 0.7},
                    {"field": "prompt_id", "op": "eq", "value": "greeting"},
                ]
            }
        },
    ).json()
    assert [r["request_id"] for r in found["data"]] == [request_id]

    def counted() -> dict[str, Any] | None:
        result = metrics_of(api, request_id, group_by="prompt")
        return result if result["totals"]["feedback"] is not None else None

    result = wait_for(counted, timeout_s=30, interval_s=0.1, what="the scores in the metrics")
    assert result["totals"]["requests"] == 1
    assert result["totals"]["feedback"] == {
        "count": 1,
        "positive": 1,
        "negative": 0,
        "positive_rate": 1.0,
    }
    assert result["totals"]["scores"]["accuracy"]["average"] == 0.75
    [group] = result["series"]
    assert group["group"] == "greeting" and group["scores"]["accuracy"]["count"] == 1


def test_a_score_waiting_for_an_async_log_joins_it(
    api: httpx.Client, key: str, records: RecordsStore
) -> None:
    request_id = str(uuid.uuid4())
    assert api.post(f"/v1/request/{request_id}/feedback", json={"rating": False}).json()["pending"]
    now = time.time()
    log = {
        "providerRequest": {
            "url": "https://api.openai.com/v1/chat/completions",
            "json": CHAT,
            "meta": {
                "Helicone-Request-Id": request_id,
                "Helicone-Prompt-Id": "async-prompt",
                "Helicone-Prompt-Version": "7",
            },
        },
        "providerResponse": {
            "json": {"object": "chat.completion", "model": "gpt-4o-mini", "choices": []},
            "status": 200,
            "headers": {},
        },
        "timing": {
            "startTime": {"seconds": int(now), "milliseconds": 0},
            "endTime": {"seconds": int(now) + 1, "milliseconds": 0},
        },
    }
    assert api.post("/oai/v1/log", json=log).status_code == 200
    row = logged(api, request_id)
    assert row["feedback"] is False
    assert (row["prompt_id"], row["prompt_version"]) == ("async-prompt", "7")
    grouped = wait_for(
        lambda: (
            (m := metrics_of(api, request_id, group_by="prompt_version"))["series"]
            and m["series"][0]["feedback"] is not None
            and m
        ),
        timeout_s=30,
        interval_s=0.1,
        what="the feedback in the metrics",
    )
    assert grouped["series"][0]["group"] == "7"
    assert grouped["series"][0]["feedback"]["positive_rate"] == 0.0


def test_a_score_after_the_call_and_posted_twice_keeps_the_last_value(
    serve: GatewayProcess, key: str, api: httpx.Client
) -> None:
    request_id = str(uuid.uuid4())
    call(serve, key, request_id)
    logged(api, request_id)
    first = api.post(f"/v1/request/{request_id}/score", json={"scores": {"accuracy": 0.2}})
    assert first.json()["pending"] is False

    def averaged(value: float) -> bool:
        scores = metrics_of(api, request_id)["totals"]["scores"]
        return bool(scores) and scores["accuracy"]["average"] == value

    wait_for(lambda: averaged(0.2), timeout_s=30, interval_s=0.1, what="the first score")
    api.post(f"/v1/request/{request_id}/score", json={"scores": {"accuracy": 0.4, "ok": True}})
    assert logged(api, request_id)["scores"] == {"accuracy": 0.4, "ok": True}
    wait_for(lambda: averaged(0.4), timeout_s=30, interval_s=0.1, what="the second score")
    totals = metrics_of(api, request_id)["totals"]
    assert totals["scores"]["accuracy"]["count"] == 1  # replaced, not added
    assert totals["scores"]["ok"]["average"] == 1.0
