"""The API's filter tree: malformed filters are refused naming the problem; the SQL the records
store runs and the Python evaluator (used for text in bodies) agree on generated rows and filters;
cursor pages are stable while calls keep arriving."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtap.api.filter_match import matches
from llmtap.api.filters import parse_filter
from llmtap.api.helicone_query import translate
from llmtap.api.search import RequestSearch, SearchQuery
from llmtap.stores.factory import open_body_store
from llmtap.stores.filter import Branch, FilterError, Leaf
from llmtap.stores.records.reader import SortField
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from support.api_backend import postgres_schema

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
T0 = 1_764_072_000_000.0


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"field": "colour", "op": "eq", "value": "x"}, "unknown field 'colour'"),
        ({"field": "model", "op": "gt", "value": "x"}, "'gt' does not apply to 'model'"),
        ({"field": "latency_ms", "op": "gt", "value": "slow"}, "filter.value: expected a number"),
        ({"field": "status", "op": "eq", "value": 200.5}, "expected a whole number"),
        ({"field": "created", "op": "gte", "value": "yesterday"}, "not an ISO-8601 time"),
        ({"field": "created", "op": "gte", "value": "2026-01-01T00:00:00"}, "needs a time zone"),
        ({"field": "model", "op": "in", "value": []}, "'in' takes a list"),
        ({"field": "body", "op": "contains", "value": ""}, "text to look for is empty"),
        ({"field": "properties.", "op": "eq", "value": "x"}, "needs a property name"),
        ({"and": []}, "filter.and: expected a non-empty list"),
        ({"and": [{"field": "model"}]}, "filter.and[0].value: missing"),
        ({"or": [{"field": "model", "value": "a"}], "x": 1}, "takes no other keys"),
        ({"not": {"field": "model", "value": "a"}}, "unknown key(s) ['not']"),
        (["model"], "expected an object, got list"),
    ],
)
def test_a_malformed_filter_is_refused_naming_the_problem(data: Any, named: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(data)
    assert named in str(caught.value)


def test_property_names_match_case_insensitively_like_the_proxy_stores_them() -> None:
    leaf = parse_filter({"field": "properties.Env", "value": "prod"})
    assert leaf == Leaf("properties.env", "eq", "prod", "str")


def test_cost_filters_are_exact_in_nano_dollars() -> None:
    leaf = parse_filter({"field": "cost_usd", "op": "gt", "value": 0.1})
    assert leaf == Leaf("cost_usd", "gt", Decimal("100000000.0"), "cost")


def test_helicone_filters_translate_to_the_same_tree() -> None:
    helicone = {
        "left": {"request": {"model": {"equals": "gpt-4o"}}},
        "operator": "and",
        "right": {
            "left": {"request_response_rmt": {"properties": {"Env": {"equals": "prod"}}}},
            "operator": "or",
            "right": {"request_response_rmt": {"latency": {"gt": 100}}},
        },
    }
    assert translate(helicone) == Branch(
        "and",
        (
            Leaf("model", "eq", "gpt-4o", "str"),
            Branch(
                "or",
                (
                    Leaf("properties.env", "eq", "prod", "str"),
                    Leaf("latency_ms", "gt", 100.0, "float"),
                ),
            ),
        ),
    )
    assert translate("all") is None


@pytest.mark.parametrize(
    ("helicone", "named"),
    [
        ({"request": {"model": {"regex": "gpt"}}}, "operator 'regex' is not supported"),
        ({"request": {"colour": {"equals": "x"}}}, "filter.request.colour: not a field"),
        # (feedback is a table now: tests/integration/test_scores_api.py)
        ({"experiment": {"id": {"equals": "x"}}}, "unknown table 'experiment'"),
        ({"feedback": {"comment": {"equals": "x"}}}, "filter.feedback.comment: not a field"),
        ({"left": "all", "operator": "xor", "right": "all"}, "expected 'and' or 'or'"),
        ({"left": "all", "operator": "and"}, "needs both 'left' and 'right'"),
    ],
)
def test_helicone_filters_llmtap_cannot_run_are_refused(helicone: Any, named: str) -> None:
    with pytest.raises(FilterError) as caught:
        translate(helicone)
    assert named in str(caught.value)


# -- SQL and Python agree ----------------------------------------------------------------------

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku", None]
USERS = ["alice", "bob", "Carol", None]
ENVS = ["prod", "staging", "Prod", None]


def random_row(rng: random.Random, i: int, org: str = "org_a") -> RequestRow:
    env = rng.choice(ENVS)
    return RequestRow(
        request_id=f"req-{i:04d}",
        org_id=org,
        created_unix_ms=T0 + rng.randrange(0, 3_600_000),
        source="proxy",
        provider=rng.choice(["openai", "anthropic"]),
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions",
        status=rng.choice([200, 200, 200, 400, 429, 500]),
        model=rng.choice(MODELS),
        user_id=rng.choice(USERS),
        properties={} if env is None else {"env": env},
        input_tokens=rng.choice([None, rng.randrange(0, 5000)]),
        total_tokens=rng.choice([None, rng.randrange(0, 9000)]),
        cost_nano_usd=rng.choice([None, 0, rng.randrange(0, 50_000_000)]),
        latency_ms=rng.uniform(10, 5000),
        ttft_ms=rng.choice([None, rng.uniform(5, 500)]),
        streamed=rng.random() < 0.5,
    )


def random_leaf(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(9)
    if choice == 0:
        return {"field": "model", "op": rng.choice(["eq", "ne"]), "value": rng.choice(MODELS[:3])}
    if choice == 1:
        return {"field": "model", "op": rng.choice(["contains", "not_contains"]), "value": "mini"}
    if choice == 2:
        return {"field": "user_id", "op": "in", "value": ["alice", "Carol"]}
    if choice == 3:
        return {"field": "properties.env", "op": rng.choice(["eq", "ne"]), "value": "prod"}
    if choice == 4:
        return {"field": "status", "op": rng.choice(["gte", "lt", "eq"]), "value": 400}
    if choice == 5:
        op = rng.choice(["gt", "gte", "lt", "lte", "eq", "ne"])
        return {"field": "cost_usd", "op": op, "value": rng.choice([0, 0.01, 0.0123456789, 0.02])}
    if choice == 6:
        return {"field": "latency_ms", "op": rng.choice(["gt", "lte"]), "value": 1500}
    if choice == 7:
        field = rng.choice(["ttft_ms", "input_tokens", "properties.env", "user_id"])
        return {"field": field, "op": "exists", "value": rng.random() < 0.5}
    return {"field": "streamed", "op": "eq", "value": True}


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth >= 2 or rng.random() < 0.4:
        return random_leaf(rng)
    op = rng.choice(["and", "or"])
    return {op: [random_filter(rng, depth + 1) for _ in range(rng.randrange(1, 4))]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    with postgres_schema(PG_URL) as url:
        yield url


@pytest.fixture
def search(tmp_path: Path, records_url: str) -> Iterator[tuple[RequestSearch, list[RequestRow]]]:
    url = records_url
    store = RecordsStore(url)
    rng = random.Random(7)
    rows = [random_row(rng, i) for i in range(300)]
    rows += [random_row(rng, i, org="org_b") for i in range(300, 400)]
    store.write_batch(rows)
    bodies = open_body_store(f"file://{tmp_path / 'bodies'}")
    searcher = RequestSearch(store.reader, bodies)
    yield searcher, rows
    bodies.close()
    store.close()


def all_ids(searcher: RequestSearch, query: SearchQuery) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = searcher.search(
            SearchQuery(query.org_id, query.filter, query.sort, query.descending, 97, cursor)
        )
        ids += [r.request_id for r in page.rows]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


def test_sql_and_python_evaluation_agree(search: tuple[RequestSearch, list[RequestRow]]) -> None:
    searcher, rows = search
    rng = random.Random(11)
    own = [r for r in rows if r.org_id == "org_a"]
    nonempty = 0
    for _ in range(150):
        tree = parse_filter(random_filter(rng))
        expected = {r.request_id for r in own if matches(tree, r, lambda _r: "")}
        got = all_ids(searcher, SearchQuery("org_a", tree))
        assert len(got) == len(set(got)), "a row was returned twice across pages"
        assert set(got) == expected, tree
        nonempty += bool(expected)
    assert nonempty > 50  # the generated filters do select something


@pytest.mark.parametrize("sort", ["created", "latency", "cost", "tokens"])
@pytest.mark.parametrize("descending", [True, False])
def test_cursor_pages_are_stable_while_calls_arrive(
    tmp_path: Path, records_url: str, sort: SortField, descending: bool
) -> None:
    url = records_url
    store = RecordsStore(url)
    bodies = open_body_store(f"file://{tmp_path / 'bodies'}")
    searcher = RequestSearch(store.reader, bodies)
    try:
        rng = random.Random(3)
        first = [random_row(rng, i) for i in range(120)]
        store.write_batch(first)
        seen: list[RequestRow] = []
        cursor = None
        arrivals = 1000
        while True:
            page = searcher.search(SearchQuery("org_a", None, sort, descending, 25, cursor))
            seen += page.rows
            # calls keep arriving between pages; ties on the sort key (cost 0, unknown tokens)
            # are broken by request id
            store.write_batch([random_row(rng, arrivals + k) for k in range(7)])
            arrivals += 7
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        ids = [r.request_id for r in seen]
        assert len(ids) == len(set(ids)), "a row was shown twice"
        assert {r.request_id for r in first} <= set(ids), "a row that existed was skipped"
        keys = [(_sort_value(sort, r), r.request_id) for r in seen]
        assert keys == sorted(keys, reverse=descending)
    finally:
        bodies.close()
        store.close()


def _sort_value(sort: str, row: RequestRow) -> float:
    if sort == "created":
        return row.created_unix_ms
    if sort == "latency":
        return row.latency_ms
    if sort == "cost":
        return -1 if row.cost_nano_usd is None else row.cost_nano_usd
    return -1 if row.total_tokens is None else row.total_tokens


def test_a_cursor_for_another_sort_is_refused(
    search: tuple[RequestSearch, list[RequestRow]],
) -> None:
    searcher, _ = search
    page = searcher.search(SearchQuery("org_a", None, "cost", True, 5))
    assert page.next_cursor is not None
    with pytest.raises(FilterError, match="sort=cost"):
        searcher.search(SearchQuery("org_a", None, "latency", True, 5, page.next_cursor))
    with pytest.raises(FilterError, match="not a cursor"):
        searcher.search(SearchQuery("org_a", None, "cost", True, 5, "garbage!"))


@pytest.mark.parametrize(("scan_limit", "limit"), [(60, 4), (5000, 7), (1, 3)])
def test_text_search_pages_through_every_match_once(
    tmp_path: Path, scan_limit: int, limit: int
) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = RecordsStore(url)
    bodies = open_body_store(f"file://{tmp_path / 'bodies'}")
    searcher = RequestSearch(store.reader, bodies, scan_limit=scan_limit)
    try:
        rng = random.Random(9)
        rows = [random_row(rng, i) for i in range(250)]
        wanted = set()
        for row in rows:
            text = "needle in here" if rng.random() < 0.1 else "just hay"
            if "needle" in text:
                wanted.add(row.request_id)
            row.response_body_key = f"{row.org_id}/{row.request_id}/response"
            bodies.put(row.response_body_key, text.encode())
        store.write_batch(rows)
        tree = parse_filter({"field": "body", "op": "contains", "value": "needle"})
        found: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = searcher.search(SearchQuery("org_a", tree, "latency", True, limit, cursor))
            assert len(page.rows) <= limit and page.scanned <= max(scan_limit, 1)
            found += [r.request_id for r in page.rows]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(found) == len(set(found))
        assert set(found) == wanted and len(wanted) > 10
        latencies = [next(r.latency_ms for r in rows if r.request_id == i) for i in found]
        assert latencies == sorted(latencies, reverse=True)
    finally:
        bodies.close()
        store.close()
