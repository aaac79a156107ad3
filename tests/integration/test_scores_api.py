"""Scores and feedback over HTTP against the real API and stores (records SQLite, chDB
analytics): what is stored, what is refused, who may score what, and the filters, metrics,
exports and request detail that show them, checked against numbers worked out by hand.

Rows go in through the consumer's own sinks. With chDB analytics (the SQLite case) scores are
sent to the analytics store by the consumer's ``ScoreSync``, run here one round at a time; with a
Postgres records store the metrics are computed there (``records://``), from the records
store's own scores, and there is no analytics store to sync to: the metrics are read through
the API either way, as the product reads them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.api.rows import iso_time
from llmtap.consumer.score_sync import ScoreSync
from llmtap.stores.analytics.store import AnalyticsStore
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import Score
from support.api_backend import ApiBackend, postgres_schema
from support.dashboard import signed_in

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
T0 = 1_764_072_000_000.0  # 2025-11-25 12:00 UTC
RANGE = {"start": T0 - 60_000, "end": T0 + 3_600_000}


def make_row(org: str, request_id: str, i: int, *, model: str, team: str) -> RequestRow:
    return RequestRow(
        request_id=request_id,
        org_id=org,
        created_unix_ms=T0 + i * 1000,
        source="proxy",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=200,
        model=model,
        endpoint="chat.completions",
        user_id=f"user-{i % 2}",
        properties={"team": team},
        latency_ms=100.0 + i,
        prompt_id="greeting" if i % 2 == 0 else "farewell",
        prompt_version="v1",
    )


class World:
    """Two organizations; A has six calls over two models and two teams."""

    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.org_a, self.key_a = backend.new_org_key("acme")
        self.org_b, self.key_b = backend.new_org_key("bravo")
        specs = [
            ("a-0", "m1", "red"),
            ("a-1", "m1", "red"),
            ("a-2", "m1", "blue"),
            ("a-3", "m2", "blue"),
            ("a-4", "m2", "blue"),
            ("a-5", "m2", "red"),
        ]
        rows = [
            make_row(self.org_a, rid, i, model=m, team=t) for i, (rid, m, t) in enumerate(specs)
        ]
        backend.write(rows)
        backend.write([make_row(self.org_b, "b-secret", 0, model="m1", team="red")])
        # as the consumer runs it: only where there is an analytics store to send scores to
        analytics = next((s for s in backend.sinks if isinstance(s, AnalyticsStore)), None)
        self.sync = (
            None
            if analytics is None
            else ScoreSync(backend.records.scores, analytics, interval_s=1, pending_ttl_s=60)
        )

    def sync_scores(self) -> None:
        """What the consumer's ``ScoreSync`` would have sent by now (nothing in records://)."""
        if self.sync is not None:
            self.sync.sync_once()

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.backend.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data: Path = tmp_path_factory.mktemp("scores-api") / "data"
    if request.param == "sqlite":
        with ApiBackend(data, scores_max_pending=5) as backend:
            yield World(backend)
        return
    with (
        postgres_schema(PG_URL) as url,
        ApiBackend(data, records_url=url, scores_max_pending=5) as backend,
    ):
        yield World(backend)


@pytest.fixture(scope="module")
def a(world: World) -> Iterator[httpx.Client]:
    with world.client(world.key_a) as client:
        yield client


def score(client: httpx.Client, request_id: str, scores: Any) -> httpx.Response:
    return client.post(f"/v1/request/{request_id}/score", json={"scores": scores})


def feedback(client: httpx.Client, request_id: str, rating: Any) -> httpx.Response:
    return client.post(f"/v1/request/{request_id}/feedback", json={"rating": rating})


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"scores": {"x" * 129: 1}}, id="name-too-long"),
        pytest.param({"scores": {"<script>alert(1)</script>": 1}}, id="name-with-markup"),
        pytest.param({"scores": {"": 1}}, id="empty-name"),
        pytest.param({"scores": {"a b": 1}}, id="name-with-space"),
        pytest.param({"scores": {"ok": "5"}}, id="string-value"),
        pytest.param({"scores": {"ok": None}}, id="null-value"),
        pytest.param({"scores": {"ok": {"nested": 1}}}, id="nested-object"),
        pytest.param({"scores": {"ok": [1]}}, id="list-value"),
        pytest.param({"scores": {"ok": 1e16}}, id="value-too-large"),
        pytest.param({"scores": {}}, id="no-scores"),
        pytest.param({"scores": [1, 2]}, id="scores-not-an-object"),
        pytest.param({"score": {"ok": 1}}, id="wrong-key"),
        pytest.param({"scores": {"ok": 1}, "extra": 1}, id="extra-key"),
        pytest.param({"scores": {f"s{i}": i for i in range(101)}}, id="over-the-per-call-cap"),
        pytest.param({"scores": {f"s{i}": i for i in range(10_000)}}, id="ten-thousand"),
    ],
)
def test_bad_scores_are_refused_with_a_400_and_nothing_stored(
    world: World, a: httpx.Client, body: Any
) -> None:
    response = a.post("/v1/request/a-0/score", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "bad_request"
    assert a.get("/v1/requests/a-0").json()["scores"] == {}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"scores": {"ok": NaN}}',
        b'{"scores": {"ok": Infinity}}',
        b'{"scores": {"ok": -Infinity}}',
        b'{"scores": {"ok": 1e400}}',
        b"not json",
        b'{"scores": {"ok": 1}',
        b"",
    ],
)
def test_non_finite_numbers_and_non_json_are_refused(a: httpx.Client, raw: bytes) -> None:
    response = a.post(
        "/v1/request/a-0/score", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert a.get("/v1/requests/a-0").json()["scores"] == {}


def test_a_body_over_the_api_cap_is_a_413(a: httpx.Client) -> None:
    scores = {f"{'n' * 120}{i:06d}": i for i in range(10_000)}  # ~1.4 MB > 1 MiB
    response = a.post("/v1/request/a-0/score", json={"scores": scores})
    assert response.status_code == 413, response.text


@pytest.mark.parametrize("rating", ["yes", 1, None, {"up": True}])
def test_feedback_takes_only_true_or_false(a: httpx.Client, rating: Any) -> None:
    assert feedback(a, "a-0", rating).status_code == 400
    assert a.get("/v1/requests/a-0").json()["feedback"] is None


def test_a_request_id_no_call_can_have_is_a_404(a: httpx.Client) -> None:
    response = score(a, "x" * 200, {"ok": 1})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_scores_need_a_key(world: World) -> None:
    with httpx.Client(base_url=world.backend.url, timeout=30) as anonymous:
        assert (
            anonymous.post("/v1/request/a-0/score", json={"scores": {"ok": 1}}).status_code == 401
        )


# -- organizations ------------------------------------------------------------------------------


def test_another_organizations_call_is_answered_like_a_missing_one_and_never_scored(
    world: World, a: httpx.Client
) -> None:
    theirs = score(a, "b-secret", {"stolen": 1})
    missing = score(a, f"never-{uuid.uuid4()}", {"stolen": 1})
    assert theirs.status_code == missing.status_code == 200
    assert theirs.json() == missing.json() == {"data": None, "error": None, "pending": True}
    assert feedback(a, "b-secret", False).json()["pending"] is True
    assert a.get("/v1/requests/b-secret").status_code == 404
    with world.client(world.key_b) as b:
        row = b.get("/v1/requests/b-secret").json()
        assert row["scores"] == {} and row["feedback"] is None
        found = b.post(
            "/v1/requests/search",
            json={"filter": {"field": "score.stolen", "op": "exists", "value": True}},
        ).json()
        assert found["data"] == []
    # A's own pending score never leaks into B's metrics either
    world.sync_scores()
    with world.client(world.key_b) as b:
        metrics = b.post("/v1/metrics", json=RANGE).json()
        assert metrics["totals"]["requests"] == 1
        assert metrics["totals"]["scores"] == {} and metrics["totals"]["feedback"] is None


def test_pending_scores_are_capped_per_organization(world: World) -> None:
    org, key = world.backend.new_org_key("capped")
    world.backend.write([make_row(org, "c-logged", 0, model="m1", team="red")])
    with world.client(key) as client:
        assert score(client, "c-1", {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}).status_code == 200
        over = score(client, "c-2", {"a": 1})
        assert over.status_code == 429, over.text
        assert "scores_max_pending" in over.json()["error"]["message"]
        # a score for a logged call is not pending: the cap does not apply
        assert score(client, "c-logged", {"a": 1}).json()["pending"] is False
        # the call landing clears its scores' pending: room again
        world.backend.write([make_row(org, "c-1", 1, model="m1", team="red")])
        assert world.backend.records.scores.pending_count(org) == 0
        assert score(client, "c-2", {"a": 1}).json()["pending"] is True


# -- stored, shown, filtered, counted -----------------------------------------------------------

# quality: a-0 0.9, a-1 0.5, a-2 0.1 (m1: avg 0.5) | a-3 1.0, a-4 0.0 (m2: avg 0.5)
# feedback: a-0 up, a-1 down, a-3 up, a-4 up, a-5 down (m1: 1/2 up, m2: 2/3 up, all: 3/5)
QUALITY = {"a-0": 0.9, "a-1": 0.5, "a-2": 0.1, "a-3": 1.0, "a-4": 0.0}
FEEDBACK = {"a-0": True, "a-1": False, "a-3": True, "a-4": True, "a-5": False}


@pytest.fixture(scope="module")
def scored(world: World, a: httpx.Client) -> World:
    for rid, value in QUALITY.items():
        # posted twice: the last value wins
        assert score(a, rid, {"quality": 0.333, "safe": True}).status_code == 200
        response = score(a, rid, {"quality": value})
        assert response.json() == {"data": None, "error": None, "pending": False}
    for rid, rating in FEEDBACK.items():
        assert feedback(a, rid, not rating).status_code == 200
        assert feedback(a, rid, rating).json()["pending"] is False
    # B scores A's request ids (calls B cannot see: kept pending under B): they must count in
    # neither organization's metrics, filters or rows
    with world.client(world.key_b) as b:
        assert score(b, "a-0", {"quality": 1000, "safe": False}).json()["pending"] is True
        assert feedback(b, "a-2", True).json()["pending"] is True
        assert feedback(b, "a-0", False).json()["pending"] is True
    world.sync_scores()
    return world


def test_another_organizations_scores_on_the_same_ids_never_count(
    scored: World, a: httpx.Client
) -> None:
    totals = metrics(a)["totals"]
    assert totals["scores"]["quality"]["max"] == 1.0
    assert totals["scores"]["safe"] == {"count": 5, "average": 1.0, "min": 1.0, "max": 1.0}
    assert totals["feedback"]["count"] == 5
    assert (
        metrics(a, filter={"field": "feedback", "op": "exists", "value": False})["totals"][
            "requests"
        ]
        == 1
    )  # a-2: B's thumbs-up on it is not A's
    assert a.get("/v1/requests/a-2").json()["feedback"] is None
    with scored.client(scored.key_b) as b:
        theirs = b.post("/v1/metrics", json=RANGE).json()["totals"]
        assert theirs["requests"] == 1
        assert theirs["scores"] == {} and theirs["feedback"] is None
        by_model = b.post("/v1/metrics", json={**RANGE, "group_by": "model"}).json()
        assert all(g["scores"] == {} for g in by_model["series"])


def test_the_detail_and_the_list_show_scores_and_feedback(scored: World, a: httpx.Client) -> None:
    row = a.get("/v1/requests/a-0").json()
    assert row["scores"] == {"quality": 0.9, "safe": True, "helicone-score-feedback": True}
    assert row["feedback"] is True
    assert row["prompt_id"] == "greeting" and row["prompt_version"] == "v1"
    listed = {r["request_id"]: r for r in a.get("/v1/requests").json()["data"]}
    assert listed["a-1"]["feedback"] is False and listed["a-1"]["scores"]["quality"] == 0.5
    assert listed["a-5"]["scores"] == {"helicone-score-feedback": False}
    assert listed["a-2"]["feedback"] is None


def search(client: httpx.Client, tree: Any) -> list[str]:
    response = client.post(
        "/v1/requests/search", json={"filter": tree, "sort": "created", "order": "asc"}
    )
    assert response.status_code == 200, response.text
    return [r["request_id"] for r in response.json()["data"]]


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({"field": "score.quality", "op": "gte", "value": 0.5}, ["a-0", "a-1", "a-3"]),
        ({"field": "score.quality", "op": "lt", "value": 0.5}, ["a-2", "a-4"]),
        ({"field": "score.quality", "op": "eq", "value": 0}, ["a-4"]),
        ({"field": "score.quality", "op": "ne", "value": 0.5}, ["a-0", "a-2", "a-3", "a-4"]),
        ({"field": "score.quality", "op": "exists", "value": False}, ["a-5"]),
        ({"field": "score.safe", "op": "eq", "value": 1}, ["a-0", "a-1", "a-2", "a-3", "a-4"]),
        ({"field": "feedback", "op": "eq", "value": True}, ["a-0", "a-3", "a-4"]),
        ({"field": "feedback", "op": "eq", "value": False}, ["a-1", "a-5"]),
        ({"field": "feedback", "op": "exists", "value": False}, ["a-2"]),
        (
            {
                "and": [
                    {"field": "feedback", "op": "eq", "value": True},
                    {"field": "model", "op": "eq", "value": "m2"},
                ]
            },
            ["a-3", "a-4"],
        ),
        (
            {
                "or": [
                    {"field": "score.quality", "op": "gt", "value": 0.95},
                    {"field": "feedback", "op": "eq", "value": False},
                ]
            },
            ["a-1", "a-3", "a-5"],
        ),
        ({"field": "prompt_id", "op": "eq", "value": "farewell"}, ["a-1", "a-3", "a-5"]),
    ],
)
def test_searches_filter_on_scores_and_feedback(
    scored: World, a: httpx.Client, tree: Any, expected: list[str]
) -> None:
    assert search(a, tree) == expected


def test_a_score_filter_beside_text_in_bodies_is_checked_on_the_candidates(
    scored: World, a: httpx.Client
) -> None:
    # no bodies are stored: "not_contains" holds for every call, so the score decides (in Python)
    tree = {
        "or": [
            {
                "and": [
                    {"field": "body", "op": "not_contains", "value": "zzz"},
                    {"field": "score.quality", "op": "gte", "value": 0.9},
                ]
            },
            {"field": "feedback", "op": "eq", "value": False},
        ]
    }
    assert search(a, tree) == ["a-0", "a-1", "a-3", "a-5"]


@pytest.mark.parametrize(
    "tree",
    [
        {"field": "score.<b>", "op": "gt", "value": 1},
        {"field": "score.x", "op": "contains", "value": "1"},
        {"field": "score.x", "op": "gt", "value": "1"},
        {"field": "feedback", "op": "gt", "value": True},
        {"field": "feedback", "op": "eq", "value": 1},
        {"field": "score." + "x" * 129, "op": "gt", "value": 1},
    ],
)
def test_bad_score_filters_are_a_400(a: httpx.Client, tree: Any) -> None:
    response = a.post("/v1/requests/search", json={"filter": tree})
    assert response.status_code == 400, response.text


def metrics(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/metrics", json={**RANGE, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_metrics_average_scores_and_the_thumbs_up_rate(scored: World, a: httpx.Client) -> None:
    totals = metrics(a)["totals"]
    assert totals["requests"] == 6
    quality = totals["scores"]["quality"]
    assert quality["count"] == 5
    assert quality["average"] == pytest.approx((0.9 + 0.5 + 0.1 + 1.0 + 0.0) / 5)
    assert (quality["min"], quality["max"]) == (0.0, 1.0)
    assert totals["feedback"] == {"count": 5, "positive": 3, "negative": 2, "positive_rate": 0.6}


def test_metrics_group_scores_by_model_user_property_and_prompt(
    scored: World, a: httpx.Client
) -> None:
    by_model = {g["group"]: g for g in metrics(a, group_by="model")["series"]}
    assert by_model["m1"]["scores"]["quality"]["average"] == pytest.approx(0.5)
    assert by_model["m2"]["scores"]["quality"]["average"] == pytest.approx(0.5)
    assert by_model["m2"]["scores"]["quality"]["count"] == 2
    assert by_model["m1"]["feedback"]["positive_rate"] == pytest.approx(1 / 2)
    assert by_model["m2"]["feedback"]["positive_rate"] == pytest.approx(2 / 3)

    # team red: a-0, a-1, a-5; blue: a-2, a-3, a-4
    by_team = {g["group"]: g for g in metrics(a, group_by="property:team")["series"]}
    assert by_team["red"]["scores"]["quality"]["average"] == pytest.approx((0.9 + 0.5) / 2)
    assert by_team["blue"]["scores"]["quality"]["average"] == pytest.approx((0.1 + 1.0 + 0.0) / 3)
    assert by_team["red"]["feedback"] == {
        "count": 3,
        "positive": 1,
        "negative": 2,
        "positive_rate": pytest.approx(1 / 3),
    }

    # users alternate: user-0 a-0, a-2, a-4; user-1 a-1, a-3, a-5
    by_user = {g["group"]: g for g in metrics(a, group_by="user")["series"]}
    assert by_user["user-0"]["scores"]["quality"]["average"] == pytest.approx((0.9 + 0.1 + 0.0) / 3)
    assert by_user["user-1"]["feedback"]["positive_rate"] == pytest.approx(1 / 3)

    by_prompt = {g["group"]: g for g in metrics(a, group_by="prompt")["series"]}
    assert set(by_prompt) == {"greeting", "farewell"}
    assert by_prompt["greeting"]["requests"] == 3
    assert by_prompt["farewell"]["scores"]["quality"]["average"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics(a, group_by="prompt_version")["series"][0]["group"] == "v1"


def test_metrics_filter_on_feedback_and_scores(scored: World, a: httpx.Client) -> None:
    liked = metrics(a, filter={"field": "feedback", "op": "eq", "value": True})["totals"]
    assert liked["requests"] == 3
    assert liked["scores"]["quality"]["average"] == pytest.approx((0.9 + 1.0 + 0.0) / 3)
    good = metrics(a, filter={"field": "score.quality", "op": "gte", "value": 0.5})["totals"]
    assert good["requests"] == 3
    assert good["feedback"]["positive"] == 2  # a-0 up, a-1 down, a-3 up
    bucketed = metrics(a, bucket="hour", group_by="model")
    assert sum(g["scores"]["quality"]["count"] for g in bucketed["series"]) == 5


def test_exports_carry_scores_feedback_and_prompts(scored: World) -> None:
    params = {"start": iso_time(RANGE["start"]), "end": iso_time(RANGE["end"])}
    with signed_in(scored.backend.url, scored.key_a) as client:
        lines = [
            json.loads(line)
            for line in client.get("/export.jsonl", params=params).text.splitlines()
        ]
        by_id = {line["request_id"]: line for line in lines}
        assert by_id["a-3"]["scores"] == {
            "quality": 1.0,
            "safe": True,
            "helicone-score-feedback": True,
        }
        assert by_id["a-3"]["feedback"] is True and by_id["a-3"]["prompt_id"] == "farewell"
        assert by_id["a-2"]["feedback"] is None
        table = list(csv.DictReader(io.StringIO(client.get("/export.csv", params=params).text)))
        rows = {r["request_id"]: r for r in table}
        assert rows["a-1"]["feedback"] == "false"
        assert json.loads(rows["a-1"]["scores"])["quality"] == 0.5
        assert rows["a-5"]["prompt_id"] == "farewell" and rows["a-2"]["feedback"] == ""


def test_the_request_view_shows_scores_and_escapes_what_it_shows(scored: World) -> None:
    backend = scored.backend
    hostile = "<script>alert(1)</script>"
    row = make_row(scored.org_a, "a-hostile", 30, model="m1", team="red")
    row.prompt_id = hostile
    backend.write([row])
    # a name the API refuses, written under it (an older llmtap, a hand-edited database)
    backend.records.scores.put(scored.org_a, "a-hostile", [Score(hostile, 0.25)], max_pending=10)
    with signed_in(backend.url, scored.key_a) as client:
        page = client.get("/requests/a-hostile").text
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "0.25" in page
        shown = client.get("/requests/a-3").text
        assert "quality" in shown and "thumbs up" in shown


def test_the_helicone_query_filters_on_scores_and_feedback_and_returns_them(
    scored: World, a: httpx.Client
) -> None:
    def query(tree: Any) -> list[dict[str, Any]]:
        response = a.post("/v1/request/query", json={"filter": tree, "sort": {"created_at": "asc"}})
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    liked = query({"feedback": {"rating": {"equals": True}}})
    assert [r["request_id"] for r in liked] == ["a-0", "a-3", "a-4"]
    assert liked[0]["scores"] == {"quality": 0.9, "safe": 1.0, "helicone-score-feedback": 1.0}
    assert liked[0]["prompt_id"] == "greeting"
    good = query(
        {
            "left": {"request_response_rmt": {"scores": {"quality": {"gte": 0.5}}}},
            "operator": "and",
            "right": {"request_response_rmt": {"prompt_id": {"equals": "farewell"}}},
        }
    )
    assert [r["request_id"] for r in good] == ["a-1", "a-3"]
    bad = a.post("/v1/request/query", json={"filter": {"feedback": {"rating": {"equals": 1}}}})
    assert bad.status_code == 400


def test_the_openapi_document_describes_both_routes(a: httpx.Client) -> None:
    paths = a.get("/v1/openapi.json").json()["paths"]
    score_op = paths["/v1/request/{request_id}/score"]["post"]
    assert "ScoreBody" in json.dumps(score_op["requestBody"])
    assert "FeedbackBody" in json.dumps(paths["/v1/request/{request_id}/feedback"]["post"])


def test_the_overview_carries_the_score_figures_too(scored: World, a: httpx.Client) -> None:
    response = a.post("/v1/metrics/overview", json=RANGE)
    assert response.status_code == 200, response.text
    overview = response.json()
    assert overview["totals"]["feedback"]["positive_rate"] == 0.6
    assert sum(b["scores"].get("quality", {}).get("count", 0) for b in overview["series"]) == 5
