"""``llmtap seed``: synthetic calls written through the stores' own sinks, as the consumer would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtap.cli import main
from llmtap.demo.seed import SeedPlan, seed
from llmtap.errors import ConfigError
from llmtap.settings import Settings, load_settings
from llmtap.stores.analytics.metrics import MetricsQuery
from llmtap.stores.factory import open_analytics_store, open_body_store, open_records_store
from llmtap.stores.filter import Leaf

NOW = 1_764_072_000_000.0  # 2025-11-25 12:00 UTC
DAY_MS = 86_400_000.0


def _settings(tmp_path: Path) -> Settings:
    return load_settings(None, data_dir=tmp_path / "data")


def test_seeded_rows_agree_across_stores_and_a_second_run_replaces_them(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    plan = SeedPlan(rows=1500, days=2, seed=7, batch=400)
    report = seed(settings, plan, now_unix_ms=NOW)
    assert report.rows == 1500
    again = seed(settings, plan, now_unix_ms=NOW)  # the same ids: replaced, not added
    assert again.rows == 1500

    records = open_records_store(settings.records_url)
    try:
        assert records.count_requests(None) == 1500
        rows = records.recent_requests(report.org_id, 1500)
    finally:
        records.close()
    assert all(NOW - 2 * DAY_MS <= r.created_unix_ms < NOW for r in rows)
    assert {r.provider for r in rows} == {"openai", "anthropic"}
    assert len({r.model for r in rows}) == 5
    priced = [r for r in rows if r.cost_nano_usd is not None]
    # every successful call is priced by genai-prices through the consumer's cost handler
    assert {r.cost_source for r in priced} == {"genai-prices"}
    assert len(priced) == sum(r.status == 200 for r in rows)
    assert {r.status for r in rows} <= {200, 429, 500}
    assert any(r.session_path and r.session_path.count("/") > 1 for r in rows)
    assert all(set(r.properties) == {"feature", "env"} for r in rows)
    assert any(r.streamed and r.ttft_ms is not None and r.ttft_ms < r.latency_ms for r in rows)

    bodies = open_body_store(settings.bodies_url)
    try:
        sample = rows[:50]
        for row in sample:
            assert row.request_body_key is not None and row.response_body_key is not None
            assert json.loads(bodies.get(row.request_body_key))["model"] == row.model
    finally:
        bodies.close()

    analytics = open_analytics_store(settings.analytics_url)
    try:
        result = analytics.metrics(MetricsQuery(report.org_id, NOW - 3 * DAY_MS, NOW)).totals
        prod = analytics.metrics(
            MetricsQuery(
                report.org_id,
                NOW - 3 * DAY_MS,
                NOW,
                filter=Leaf("properties.env", "eq", "prod", "str"),
            )
        ).totals
    finally:
        analytics.close()
    assert result.requests == 1500
    assert result.cost_nano_usd == sum(r.cost_nano_usd or 0 for r in rows)
    assert result.tokens["input"] == sum(r.input_tokens or 0 for r in rows)
    assert prod.requests == sum(r.properties["env"] == "prod" for r in rows)


def test_the_command_writes_without_bodies_and_refuses_an_unknown_org(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    assert main(["--data-dir", data, "seed", "--rows", "120", "--days", "1", "--no-bodies"]) == 0
    assert "seeded 120 rows" in capsys.readouterr().out
    settings = _settings(tmp_path)
    records = open_records_store(settings.records_url)
    try:
        rows = records.recent_requests(None, 200)
    finally:
        records.close()
    assert len(rows) == 120
    assert all(r.request_body_key is None for r in rows)
    with pytest.raises(ConfigError, match="no such organization"):
        seed(settings, SeedPlan(rows=5, org="org_nope"))


def test_calls_come_oldest_first_over_the_whole_range_exactly_as_many_as_asked() -> None:
    from llmtap.demo.seed import Seeder

    seeder = Seeder(SeedPlan(rows=3000, days=1), "org", NOW)
    times = [when for _, when in seeder.calls()]
    assert len(times) == 3000
    assert times == sorted(times)
    assert times[0] < NOW - 0.9 * DAY_MS and times[-1] > NOW - 0.1 * DAY_MS
    assert all(NOW - DAY_MS <= t < NOW for t in times)
