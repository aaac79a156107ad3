"""The evaluator's decisions over a real records store (SQLite) and a scripted metrics reader:
which values breach, what min_requests and "no data" do, lt/lte rules, every metric's figure,
the cap on firing groups, and a reader that fails leaving the state as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from llmtap.alerts.evaluator import AlertEvaluator, EvaluatorConfig
from llmtap.api.filters import FilterLimits
from llmtap.errors import StoreUnavailable
from llmtap.stores.analytics.metrics import MetricsQuery, MetricsResult, nothing
from llmtap.stores.records.alerts import RuleSpec
from llmtap.stores.records.store import RecordsStore

SPEC = RuleSpec("r", "error_rate", "gt", 0.5, 60, 3, None, None)


class Scripted:
    """Answers each ``metrics`` with what the test put in ``next`` (or raises it)."""

    def __init__(self) -> None:
        self.next: MetricsResult | Exception = MetricsResult(nothing())
        self.queries: list[MetricsQuery] = []

    def metrics(self, query: MetricsQuery) -> MetricsResult:
        self.queries.append(query)
        if isinstance(self.next, Exception):
            raise self.next
        return self.next


def figures(requests: int, errors: int = 0, group: str | None = None, **kw: object) -> object:
    return replace(nothing(), requests=requests, errors=errors, group=group, **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordsStore]:
    s = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    yield s
    s.close()


class World:
    def __init__(self, store: RecordsStore, spec: RuleSpec, max_groups: int = 100) -> None:
        self.store = store
        self.org = store.default_org_id()
        self.rule_id, _ = store.alerts.create(self.org, "https://93.184.215.14/a", spec)
        self.reader = Scripted()
        self.clock = [1_800_000_000.0]
        self.evaluator = AlertEvaluator(
            store.alerts,
            self.reader,
            EvaluatorConfig(1000, 0.1, max_groups, FilterLimits()),
            clock=lambda: self.clock[0],
        )

    def run(self, totals: object, series: list[object] | None = None) -> list[str]:
        """One evaluation; the statuses enqueued by it."""
        before = {d.id for d in self.store.outbox.history(self.org, self.rule_id, 1000)}
        self.reader.next = MetricsResult(totals, series or [])  # type: ignore[arg-type]
        self.clock[0] += 1
        assert self.evaluator.run_once() == 1
        new = [
            d for d in self.store.outbox.history(self.org, self.rule_id, 1000) if d.id not in before
        ]
        return sorted(d.dedup_key.rsplit(".", 1)[1] for d in new)

    def open_groups(self) -> list[str | None]:
        return sorted(
            (e.group_value for e in self.store.alerts.open_episodes(self.rule_id)),
            key=lambda g: g or "",
        )


def test_fires_once_holds_and_resolves_once(store: RecordsStore) -> None:
    w = World(store, SPEC)
    assert w.run(figures(10, 1)) == []
    assert w.run(figures(10, 6)) == ["firing"]
    assert w.run(figures(10, 9)) == []
    assert w.run(figures(10, 6)) == []
    assert w.run(figures(10, 5)) == ["resolved"], "0.5 is not > 0.5"
    assert w.run(figures(10, 5)) == []
    assert w.run(figures(10, 8)) == ["firing"], "a new episode"
    assert len(store.alerts.history(w.org, w.rule_id, 10)) == 2
    query = w.reader.queries[-1]
    assert query.end_unix_ms - query.start_unix_ms == 60_000 and query.org_id == w.org


def test_too_few_calls_neither_fire_nor_resolve(store: RecordsStore) -> None:
    w = World(store, SPEC)
    assert w.run(figures(2, 2)) == [], "2 calls < min_requests 3"
    assert w.run(figures(3, 3)) == ["firing"]
    assert w.run(figures(0)) == [], "no calls at all: nothing is known, the episode stays open"
    assert w.run(figures(2, 0)) == [], "2 healthy calls < min_requests 3: still not known"
    assert w.run(figures(3, 3)) == [], "breaching again: the same episode, no second firing"
    assert w.run(figures(3, 0)) == ["resolved"]


def test_lower_than_rules_and_values_without_data(store: RecordsStore) -> None:
    w = World(store, replace(SPEC, metric="latency_p95_ms", comparison="lt", threshold=50))
    latency = dict.fromkeys(("p50", "p90", "p95", "p99"), None)
    assert w.run(figures(10, latency_ms=latency)) == [], "no p95: never breaches"
    assert w.run(figures(10, latency_ms={**latency, "p95": 40.0})) == ["firing"]
    assert w.run(figures(10, latency_ms={**latency, "p95": float("nan")})) == ["resolved"]


@pytest.mark.parametrize(
    ("metric", "threshold", "fields", "fires"),
    [
        ("cost_usd", 1.0, {"cost_nano_usd": 1_500_000_000}, True),
        ("cost_usd", 2.0, {"cost_nano_usd": 1_500_000_000}, False),
        ("request_count", 9, {}, True),
        ("unpriced_share", 0.25, {"unpriced_requests": 3}, True),
        ("unpriced_share", 0.3, {"unpriced_requests": 3}, False),
    ],
)
def test_each_metric_reads_its_figure(
    store: RecordsStore, metric: str, threshold: float, fields: dict[str, int], fires: bool
) -> None:
    w = World(store, replace(SPEC, metric=metric, threshold=threshold))
    assert w.run(figures(10, **fields)) == (["firing"] if fires else [])


def test_groups_fire_on_their_own_up_to_the_cap(store: RecordsStore) -> None:
    w = World(store, replace(SPEC, group_by="model"), max_groups=2)
    bad = [figures(5, 5, group=f"m{i}") for i in range(3)]
    assert w.run(figures(15, 15), [*bad, figures(5, 0, group="ok")]) == ["firing", "firing"]
    assert w.open_groups() == ["m0", "m1"]
    # m0 recovers: its room goes to m2; m1 keeps firing, silently
    assert w.run(figures(15, 10), [figures(5, 0, group="m0"), *bad[1:]]) == [
        "firing",
        "resolved",
    ]
    assert w.open_groups() == ["m1", "m2"]
    claimed = store.outbox.claim(w.rule_id, 10**15, 100, 1000)
    bodies = [json.loads(c.body) for c in claimed]
    assert len(bodies) == 4
    assert {b["group"] for b in bodies if b["status"] == "firing"} == {"m0", "m1", "m2"}


def test_a_reader_that_fails_changes_nothing_and_says_so(store: RecordsStore) -> None:
    w = World(store, SPEC)
    assert w.run(figures(10, 9)) == ["firing"]
    w.reader.next = StoreUnavailable("analytics store down")
    w.clock[0] += 1
    assert w.evaluator.run_once() == 1
    rule = store.alerts.rule(w.org, w.rule_id)
    assert rule is not None and "analytics store down" in (rule.last_error or "")
    assert w.open_groups() == [None]
    assert w.run(figures(10, 9)) == []
    rule = store.alerts.rule(w.org, w.rule_id)
    assert rule is not None and rule.last_error is None
