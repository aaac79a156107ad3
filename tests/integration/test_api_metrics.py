"""Metrics correctness over HTTP: generated calls go in through the consumer's sinks (records +
chDB), and every number the API reports is checked against the same numbers computed here, in
Python, from the generated rows. Then the batch is redelivered (three times, and reshuffled) and
nothing may move.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.api.filter_match import matches
from llmtap.api.filters import parse_filter
from llmtap.api.server import ApiService
from llmtap.settings import Settings
from llmtap.stores.factory import open_records_store
from llmtap.stores.row import RequestRow
from support.api_backend import ApiBackend
from support.processes import free_port

HOUR_MS = 3_600_000
T0 = 1_764_064_800_000  # 2025-11-25 10:00:00 UTC, on an hour
START, END = T0, T0 + 6 * HOUR_MS
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
TOKEN_KINDS = (
    "input",
    "output",
    "total",
    "cache_read",
    "cache_write",
    "reasoning",
    "audio_input",
    "audio_output",
)


def generate(org: str, count: int, seed: int) -> list[RequestRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        model = rng.choice(["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku", "mystery-model", None])
        priced = model not in ("mystery-model", None) and rng.random() < 0.9
        tokens = {
            f"{kind}_tokens": rng.choice([None, rng.randrange(0, 10_000)]) for kind in TOKEN_KINDS
        }
        feature = rng.choice(["chat", "search", "summary", None])
        rows.append(
            RequestRow(
                request_id=f"{org}-{i:05d}",
                org_id=org,
                # whole milliseconds inside the window, some on the edges of buckets
                created_unix_ms=float(START + rng.choice([0, rng.randrange(0, END - START)])),
                source="proxy",
                provider="anthropic" if model and model.startswith("claude") else "openai",
                method="POST",
                target_url="https://api.openai.com/v1/chat/completions",
                path="/v1/chat/completions",
                status=rng.choice([200] * 8 + [0, 400, 429, 500]),
                error=rng.choice([None] * 9 + ["upstream_timeout"]),
                model=model,
                endpoint="chat.completions",
                user_id=rng.choice([None, *[f"user-{u}" for u in range(25)]]),
                properties={} if feature is None else {"feature": feature},
                usage_source="provider",
                cost_nano_usd=rng.randrange(0, 90_000_000_000) if priced else None,
                cost_source="genai-prices" if priced else "unpriced",
                latency_ms=round(rng.lognormvariate(6, 1), 3),
                ttft_ms=rng.choice([None, round(rng.uniform(5, 900), 3)]),
                **tokens,
            )
        )
    for i, row in enumerate(rows):
        # every 7th call answered from the gateway's cache: cost 0, its price saved
        if i % 7 == 0:
            row.cache_hit = True
            if row.cost_nano_usd is not None:
                row.cache_saved_nano_usd, row.cost_nano_usd = row.cost_nano_usd, 0
                row.cost_source = "cache_hit"
    return rows


# -- the numbers, computed independently ---------------------------------------------------------


def quantile(values: list[float], level: float) -> float | None:
    """ClickHouse quantileExact: the element at index floor(level * n) of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(level * len(ordered)), len(ordered) - 1)]


def expected_metrics(rows: list[RequestRow]) -> dict[str, Any]:
    n = len(rows)
    errors = sum(1 for r in rows if r.status >= 400 or r.status == 0 or r.error is not None)
    nano = sum(r.cost_nano_usd for r in rows if r.cost_nano_usd is not None)
    unpriced = sum(
        1 for r in rows if r.cost_nano_usd is None and (r.model or r.response_model) is not None
    )
    ttfts = [r.ttft_ms for r in rows if r.ttft_ms is not None]
    hits = sum(1 for r in rows if r.cache_hit)
    saved = sum(r.cache_saved_nano_usd or 0 for r in rows)
    return {
        "requests": n,
        "errors": errors,
        "error_rate": errors / n if n else None,
        "cost_nano_usd": nano,
        "cost_usd": float(Decimal(nano) / 10**9),
        "priced_requests": sum(1 for r in rows if r.cost_nano_usd is not None),
        "unpriced_requests": unpriced,
        "unpriced_share": unpriced / n if n else None,
        "tokens": {
            kind: sum(getattr(r, f"{kind}_tokens") or 0 for r in rows) for kind in TOKEN_KINDS
        },
        "latency_ms": {k: quantile([r.latency_ms for r in rows], q) for k, q in QUANTILES.items()},
        "ttft_ms": {k: quantile(ttfts, q) for k, q in QUANTILES.items()},
        "active_users": len({r.user_id for r in rows if r.user_id is not None}),
        "cache_hits": hits,
        "cache_hit_rate": hits / n if n else None,
        "cache_saved_nano_usd": saved,
        "cache_saved_usd": float(Decimal(saved) / 10**9),
        # no scores were posted on these calls (tests/integration/test_scores_api.py has them)
        "scores": {},
        "feedback": None,
    }


def only_metrics(item: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in item.items() if k not in ("bucket_start", "bucket_start_unix_ms", "group")
    }


def grouped(
    rows: list[RequestRow], key: Callable[[RequestRow], Any]
) -> dict[Any, list[RequestRow]]:
    groups: dict[Any, list[RequestRow]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return groups


# -- fixtures ------------------------------------------------------------------------------------


class Loaded:
    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self.org, self.key = backend.new_org_key("metrics-a")
        other_org, _ = backend.new_org_key("metrics-b")
        self.rows = generate(self.org, 1500, seed=1)
        backend.write(self.rows)
        # another organization's calls in the same window must not count
        backend.write(generate(other_org, 700, seed=2))

    def metrics(self, **params: Any) -> dict[str, Any]:
        with httpx.Client(
            base_url=self.backend.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        ) as client:
            response = client.post("/v1/metrics", json={"start": START, "end": END, **params})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    with ApiBackend(tmp_path_factory.mktemp("api-metrics") / "data") as backend:
        yield Loaded(backend)


# -- tests ---------------------------------------------------------------------------------------


def test_totals_match_the_generated_calls(loaded: Loaded) -> None:
    got = loaded.metrics()
    assert only_metrics(got["totals"]) == expected_metrics(loaded.rows)
    assert got["series"] == []
    # the data are not degenerate: there is something to get wrong
    totals = got["totals"]
    assert 0 < totals["errors"] < totals["requests"]
    assert totals["unpriced_requests"] > 0 and totals["active_users"] == 25


@pytest.mark.parametrize(
    ("group_by", "key"),
    [
        ("model", lambda r: r.model),
        ("provider", lambda r: r.provider),
        ("user", lambda r: r.user_id),
        ("status", lambda r: str(r.status)),
        ("property:feature", lambda r: r.properties.get("feature")),
    ],
)
def test_groups_match(loaded: Loaded, group_by: str, key: Callable[[RequestRow], Any]) -> None:
    got = loaded.metrics(group_by=group_by)
    expected = grouped(loaded.rows, key)
    assert {item["group"] for item in got["series"]} == set(expected)
    for item in got["series"]:
        assert only_metrics(item) == expected_metrics(expected[item["group"]]), item["group"]


@pytest.mark.parametrize(
    ("bucket", "size_ms"), [("hour", HOUR_MS), (900, 900_000), ("day", 86_400_000)]
)
def test_buckets_match(loaded: Loaded, bucket: str | int, size_ms: int) -> None:
    got = loaded.metrics(bucket=bucket, group_by="model")
    expected = grouped(
        loaded.rows, lambda r: (int(r.created_unix_ms) // size_ms * size_ms, r.model)
    )
    assert {(i["bucket_start_unix_ms"], i["group"]) for i in got["series"]} == set(expected)
    for item in got["series"]:
        rows = expected[(item["bucket_start_unix_ms"], item["group"])]
        assert only_metrics(item) == expected_metrics(rows)
    assert sum(i["requests"] for i in got["series"]) == len(loaded.rows)


def test_the_time_range_is_start_inclusive_end_exclusive(loaded: Loaded) -> None:
    start, end = START + HOUR_MS, START + 3 * HOUR_MS
    got = loaded.metrics(start=start, end=end)
    inside = [r for r in loaded.rows if start <= r.created_unix_ms < end]
    assert only_metrics(got["totals"]) == expected_metrics(inside)


def test_redelivered_batches_never_count_twice(loaded: Loaded) -> None:
    views = [{}, {"group_by": "model"}, {"bucket": "hour", "group_by": "property:feature"}]
    before = [loaded.metrics(**v) for v in views]
    for _ in range(3):
        loaded.backend.write(loaded.rows)
    shuffled = list(loaded.rows)
    random.Random(5).shuffle(shuffled)
    for start in range(0, len(shuffled), 400):
        loaded.backend.write(shuffled[start : start + 400])
    after = [loaded.metrics(**v) for v in views]
    assert after == before
    assert only_metrics(after[0]["totals"]) == expected_metrics(loaded.rows)


def test_metrics_without_an_analytics_store_answer_503(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", api_port=free_port())
    service = ApiService(settings, metrics=None)
    service.start()
    try:
        assert service.wait_started()
        store = open_records_store(settings.records_url)
        _, key = store.create_key(store.default_org_id(), "k")
        store.close()
        with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {key}"}) as c:
            response = c.get("/v1/metrics")
            assert response.status_code == 503
            assert "analytics store" in response.json()["error"]["message"]
            assert c.get("/v1/requests").status_code == 200  # the rest still works
    finally:
        service.stop()


# -- filtered metrics: ClickHouse and the Python evaluator agree ---------------------------------


def random_leaf(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(10)
    if choice == 0:
        model = rng.choice(["gpt-4o", "gpt-4o-mini", "mystery-model"])
        return {"field": "model", "op": rng.choice(["eq", "ne", "contains"]), "value": model}
    if choice == 1:
        return {"field": "user_id", "op": "in", "value": ["user-1", "user-2", "user-3"]}
    if choice == 2:
        op = rng.choice(["eq", "ne", "contains", "not_contains"])
        return {"field": "properties.feature", "op": op, "value": rng.choice(["chat", "s"])}
    if choice == 3:
        field = rng.choice(["properties.feature", "ttft_ms", "input_tokens", "user_id", "error"])
        return {"field": field, "op": "exists", "value": rng.random() < 0.5}
    if choice == 4:
        return {"field": "status", "op": rng.choice(["gte", "lt", "eq", "ne"]), "value": 400}
    if choice == 5:
        op = rng.choice(["gt", "gte", "lt", "lte", "eq", "ne"])
        return {"field": "cost_usd", "op": op, "value": rng.choice([0, 10, 45.5, 12.3456789012])}
    if choice == 6:
        return {"field": "latency_ms", "op": rng.choice(["gt", "lte"]), "value": 400}
    if choice == 7:
        moment = START + rng.randrange(0, END - START)
        return {"field": "created", "op": rng.choice(["gte", "lt"]), "value": moment}
    if choice == 8:
        return {"field": "provider", "op": "in", "value": ["anthropic"]}
    return {"field": "output_tokens", "op": rng.choice(["gt", "lte"]), "value": 5000}


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth >= 2 or rng.random() < 0.4:
        return random_leaf(rng)
    op = rng.choice(["and", "or"])
    return {op: [random_filter(rng, depth + 1) for _ in range(rng.randrange(1, 4))]}


def test_filtered_metrics_count_what_the_filter_selects(loaded: Loaded) -> None:
    rng = random.Random(17)
    for _ in range(40):
        raw = random_filter(rng)
        tree = parse_filter(raw)
        selected = [r for r in loaded.rows if matches(tree, r, lambda _r: "")]
        got = loaded.metrics(filter=raw, group_by="model")
        assert only_metrics(got["totals"]) == expected_metrics(selected), raw
        assert sum(i["requests"] for i in got["series"]) == len(selected)


def test_text_in_bodies_cannot_filter_metrics(loaded: Loaded) -> None:
    with httpx.Client(
        base_url=loaded.backend.url, headers={"Authorization": f"Bearer {loaded.key}"}
    ) as client:
        response = client.post(
            "/v1/metrics", json={"filter": {"field": "body", "op": "contains", "value": "x"}}
        )
    assert response.status_code == 400
    assert "body" in response.json()["error"]["message"]
